// Tools an agent can call. Tool execution always happens on the main thread (the orchestrator),
// never in a worker: workers ask, the main thread checks and executes.
import type { ToolOutcome, ToolSpec } from '../contract/tool.js';
import type { CommandSandbox } from '../sandbox/index.js';
import type { ProtectedPathCheck } from '../contract/protected-path.js';

export interface ToolContext {
  /** Realpath of the workspace root every file tool is confined to. */
  workspaceRoot: string;
  signal?: AbortSignal;
  /**
   * Policy hook for fetch_url, called with the absolute URL of EVERY request it is about to make
   * (the first one and each redirect hop). `ok: false` refuses the request; `reason` is shown to the model.
   */
  checkUrl?: (url: string) => { ok: boolean; reason: string };
  /**
   * fetch_url calls this for every address a request would connect to (each resolved address, or the
   * IP-literal host) with the URL of that hop. `ok: false` refuses the request. Absent: only public
   * addresses are reachable.
   */
  checkAddress?: (url: string, address: string) => { ok: boolean; reason: string };
  /**
   * Policy hook for list_dir and search_files, which are permitted on their starting path only: called
   * for every entry they would show or read. `rel` is the entry's workspace-relative path as listed,
   * `abs` its real path (a symlink's resolved target). `use` is 'list' when only the name and size are
   * shown, 'read' when its contents are searched. false hides the entry.
   */
  filterPath?: (rel: string, abs: string, use: 'list' | 'read') => boolean;
  /**
   * run_command's OS sandbox for this call (server settings + the run's rules). Without it run_command
   * refuses to run anything: there is no unconfined default.
   */
  sandbox?: CommandSandbox;
  /**
   * The server's protected paths (state dir, agent directories, mcp.json, .git internals), resolved for
   * this call. The file tools refuse them and leave them out of listings whatever the rules say; the tool
   * gate always sets it.
   */
  protect?: ProtectedPathCheck;
}

/** A built-in tool, made by defineTool (define-tool.ts). */
export interface BuiltinTool {
  spec: ToolSpec;
  /** Never rejects: invalid arguments, refusals and failures are all error outcomes. */
  run(args: Record<string, unknown>, ctx: ToolContext): Promise<ToolOutcome>;
}
