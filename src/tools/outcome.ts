// The one error style of the tools layer: a tool returns a ToolOutcome for every expected failure
// (bad arguments, refused path, missing file, timeout) and never throws one. Unexpected exceptions are
// caught once, in defineTool (define-tool.ts), and become an `internal error` outcome.
import type { ToolOutcome } from '../contract/tool.js';

export const ok = (content: string): ToolOutcome => ({ content, isError: false });
export const fail = (content: string): ToolOutcome => ({ content, isError: true });

export function abortedOutcome(tool: string): ToolOutcome {
  return fail(`${tool}: aborted`);
}
