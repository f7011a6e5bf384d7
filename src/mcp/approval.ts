// Approvals for `ask` permission rules, as MCP elicitation: "agent X wants to run `npm publish`" →
// allow once / allow for this run / deny. On 2025-era connections the form is pushed to the client in
// the middle of the tool call (here). On 2026-07-28 connections a server cannot push: agent tools,
// `delegate` and `delegate_parallel` ask with input_required results instead (input-required.ts); a
// background run there is denied with the reason (meta-tools.ts). A client that did not declare the
// `elicitation` capability cannot be asked.
// In every such case (and on a timeout) the asker rejects with the reason, and the tool gate denies
// the call with it: never a hang.
import type { ElicitRequestFormParams, ElicitResult, McpServer, ServerContext } from '@modelcontextprotocol/server';
import type { RunLauncher } from '../orchestrator/launcher.js';
import type { RunRequest } from '../orchestrator/orchestrator.js';
import type { RunResult } from '../contract/run.js';
import type { RunRecord } from '../orchestrator/runs.js';
import type { AskAnswer, AskFn, AskQuestion } from '../orchestrator/tool-gate.js';

const DECISIONS = ['allow_once', 'allow_run', 'deny'] as const;

/** The elicitation form of an approval question (both eras). */
export function approvalForm(q: AskQuestion): ElicitRequestFormParams {
  return {
    mode: 'form',
    message:
      `agent ${q.agent} wants to ${q.summary}. Rule "${q.rule}" requires your approval. ` +
      `"allow_run" also approves later ${q.tool} calls this rule covers, until the run ends.`,
    requestedSchema: {
      type: 'object',
      properties: {
        decision: {
          type: 'string',
          title: 'Decision',
          description: 'allow_once: this call only; allow_run: for the rest of this run; deny: refuse',
          enum: [...DECISIONS],
        },
      },
      required: ['decision'],
    },
  };
}

/**
 * An AskFn that asks this session's client. With `ctx` the request is sent as part of the tool call
 * being handled (ctx.mcpReq.elicitInput); without it, on the session (for runs that outlive the call
 * that started them, e.g. background delegations).
 */
export function approvalAsker(server: McpServer, ctx: ServerContext | undefined, timeoutMs: number): AskFn {
  return async (q) => {
    // From 2026-07-28 on a server can only ask by ending the call with input_required, which a run
    // deep in its loop cannot do (the SDK's elicitInput would throw the same, less plainly).
    const version = server.server.getNegotiatedProtocolVersion();
    if (version && version >= '2026-07-28') {
      throw new Error(`this connection uses MCP ${version}, where a server cannot send an approval request in the middle of a tool call`);
    }
    const caps = server.server.getClientCapabilities();
    if (caps && !caps.elicitation) throw new Error('the client did not declare the elicitation capability');
    const opts = { timeout: timeoutMs, ...(q.signal && { signal: q.signal }) };
    let res: ElicitResult;
    try {
      res = ctx ? await ctx.mcpReq.elicitInput(approvalForm(q), opts) : await server.server.elicitInput(approvalForm(q), opts);
    } catch (err) {
      const e = err as Error & { code?: unknown };
      if (e.code === 'REQUEST_TIMEOUT') throw new Error(`no answer within ${timeoutMs / 1000} s`);
      throw new Error(`the approval request failed: ${e.message}`);
    }
    return approvalAnswer(res.action, res.content as Record<string, unknown> | undefined);
  };
}

/** The client's answer to the approval form: anything but an accepted allow is a deny. */
export function approvalAnswer(action: string, content: Record<string, unknown> | undefined): AskAnswer {
  if (action !== 'accept') return 'deny';
  const d = content?.decision;
  return d === 'allow_once' ? 'once' : d === 'allow_run' ? 'run' : 'deny';
}

/**
 * The launcher the meta tools start runs with: they have no handler context at hand when a run asks
 * (a background run outlives its call), so every run they start may ask this session's client, unless
 * the request brings its own asker.
 */
export class SessionAskingLauncher implements RunLauncher {
  constructor(
    private readonly inner: RunLauncher,
    private readonly ask: AskFn,
  ) {}

  start(req: RunRequest): RunRecord {
    return this.inner.start({ ...req, ask: req.ask ?? this.ask });
  }

  run(req: RunRequest): Promise<RunResult> {
    return this.inner.run({ ...req, ask: req.ask ?? this.ask });
  }
}
