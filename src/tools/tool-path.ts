// The first step of every file tool: its `path` argument resolved inside the workspace (workspace-path.ts)
// and checked against the server's protected paths, refused in the one wording the tools share.
import path from 'node:path';
import type { ProtectedAccess } from '../contract/protected-path.js';
import type { ToolOutcome } from '../contract/tool.js';
import { resolveInWorkspace } from '../workspace/workspace-path.js';
import { fail } from './outcome.js';
import type { ToolContext } from './types.js';

export type ToolPath = { ok: true; abs: string; rel: string } | { ok: false; outcome: ToolOutcome };

/** `p` resolved (for writing when `access` is 'write') and not protected for `access`, or "<tool>: <why not>". */
export async function resolveToolPath(tool: string, ctx: ToolContext, p: string, access: ProtectedAccess): Promise<ToolPath> {
  const r = await resolveInWorkspace(ctx.workspaceRoot, p, access === 'write' ? { forWrite: true } : {});
  if (!r.ok) return { ok: false, outcome: fail(`${tool}: ${r.reason}`) };
  const hit = ctx.protect?.check(access, r.abs, path.resolve(ctx.workspaceRoot, p));
  if (hit) return { ok: false, outcome: fail(`${tool}: ${hit.message}`) };
  return r;
}
