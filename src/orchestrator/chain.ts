// The call chain: the limits that travel with a delegated call. Inside the process it is an object;
// across the re-entry hop it travels in the MCP request's `_meta` under CHAIN_META_KEY, and the child
// enforces it as its own ceilings. A chain can only LOWER limits relative to the server's own config:
// depth is checked against our max_depth, budgets become per-call caps (which only lower), and rules
// are intersected with the agent's own (which only narrows). So a forged chain cannot raise anything.
// Its ids (root, parent, caller) are another matter: they place the run in someone's audit tree. A parent
// signs the chains it sends its re-entry child with a key only the two share (CHAIN_KEY_ENV); a chain
// without that signature still lowers limits, but its ids are recorded as a claim (`claimed_chain`).
import { createHmac, createSecretKey, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { sha256Hex } from '../storage/hash.js';
import { canonicalJson } from '../audit/events.js';
import { z } from 'zod';
import type { AgentDefinition } from '../agents/definition.js';

export const CHAIN_META_KEY = 'io.delegate-mcp/chain';
/** The parent's signature over the chain, next to it in `_meta`. */
export const CHAIN_MAC_META_KEY = 'io.delegate-mcp/chain-mac';
/** Set by a parent in its re-entry child's environment: the key the chains it sends are signed with. */
export const CHAIN_KEY_ENV = 'DELEGATE_MCP_CHAIN_KEY';
/** What the child returns in the result's `_meta`: its run id, usage and cost, for the parent's books. */
export const RESULT_META_KEY = 'io.delegate-mcp/run';

const RuleLayerSchema = z.object({
  label: z.string().optional(),
  deny: z.array(z.string()),
  ask: z.array(z.string()),
  allow: z.array(z.string()),
  /** The sandbox network grant travels with the rules, so a delegation can only narrow it. */
  network: z.boolean().optional(),
});

export const CallChainSchema = z.strictObject({
  v: z.literal(1),
  root_run_id: z.string().min(1).max(100),
  parent_run_id: z.string().min(1).max(100),
  /** Depth of the run this call creates (the caller's depth + 1). */
  depth: z.number().int().min(1).max(64),
  /** Root first: who is already running, with a digest of the task each was given. */
  ancestry: z.array(z.object({ agent: z.string(), task: z.string() })).min(1).max(64),
  /** The slice of the caller's budget granted to this call. */
  budget: z.object({ tokens: z.number().nonnegative().optional(), usd: z.number().nonnegative().optional() }),
  /** The caller's effective permission rules. */
  rules: z.object({ layers: z.array(RuleLayerSchema).max(32) }),
});

export type CallChain = z.infer<typeof CallChainSchema>;

/** Where a run stands in its delegation tree (what its own delegations extend). */
export interface RunLineage {
  rootRunId: string;
  depth: number;
  /** The chain so far, this run last. Only delegation reads it, so runs that never delegate never hash their task. */
  readonly ancestry: { agent: string; task: string }[];
}

/** A lineage whose own ancestry entry (a hash of the task) is computed on first use. */
export function lineageOf(rootRunId: string, depth: number, before: { agent: string; task: string }[], agent: string, input: Record<string, unknown>): RunLineage {
  let ancestry: { agent: string; task: string }[] | undefined;
  return {
    rootRunId,
    depth,
    get ancestry() {
      return (ancestry ??= [...before, { agent, task: taskDigest(input) }]);
    },
  };
}

/** Digest of a task after normalising whitespace and case, so "same task" survives reformatting. */
export function taskDigest(input: Record<string, unknown>): string {
  const { budget: _b, ...rest } = input;
  const text = JSON.stringify(rest).toLowerCase().replace(/\s+/g, ' ').trim();
  return sha256Hex(text).slice(0, 16);
}

export function describeChain(ancestry: { agent: string }[], next?: string): string {
  return [...ancestry.map((a) => a.agent), ...(next ? [next] : [])].join(' → ');
}

/**
 * Whether `target` may run as the next hop of `lineage` with this input. Returns the refusal reason,
 * or undefined when allowed. Used by the caller before a hop and by the child on arrival.
 */
export function refuseHop(lineage: RunLineage, target: AgentDefinition, input: Record<string, unknown>, maxDepth: number): string | undefined {
  const depth = lineage.depth + 1;
  if (depth > maxDepth) {
    return `delegation refused: ${describeChain(lineage.ancestry, target.name)} would be depth ${depth}, over max_depth ${maxDepth}`;
  }
  const already = lineage.ancestry.filter((a) => a.agent === target.name);
  if (already.length) {
    if (!target.allowReentry) {
      return `delegation refused: cycle ${describeChain(lineage.ancestry, target.name)} (${target.name} is already running in this chain; set allow_reentry: true in its definition to permit re-entry with a different task)`;
    }
    const digest = taskDigest(input);
    if (already.some((a) => a.task === digest)) {
      return `delegation refused: ${target.name} is already working on this same task in the chain ${describeChain(lineage.ancestry)}`;
    }
  }
  return undefined;
}

/**
 * Parses `_meta[CHAIN_META_KEY]`; a malformed chain is refused with the reason. `claimed`: it does not
 * carry the signature of the parent that started this process (`key`), so only its limits are taken.
 */
export function parseChain(meta: Record<string, unknown> | undefined, key: ChainKey | undefined): { chain?: CallChain; claimed?: boolean; error?: string } {
  const raw = meta?.[CHAIN_META_KEY];
  if (raw === undefined) return {};
  const r = CallChainSchema.safeParse(raw);
  if (!r.success) {
    return { error: `invalid ${CHAIN_META_KEY} in _meta: ${r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}` };
  }
  if (r.data.ancestry.length !== r.data.depth) return { error: `invalid ${CHAIN_META_KEY}: depth ${r.data.depth} does not match an ancestry of ${r.data.ancestry.length}` };
  // Checked on what was sent (parsing drops members it does not know).
  return { chain: r.data, claimed: !key?.verify(raw, meta?.[CHAIN_MAC_META_KEY]) };
}

/** The key a parent and its re-entry child share: the parent signs the chains it sends, the child checks them. */
export class ChainKey {
  readonly #key: KeyObject;

  private constructor(readonly secret: string) {
    this.#key = createSecretKey(Buffer.from(secret, 'utf8'));
  }

  /** A new key, for a parent's re-entry child (handed over in its environment, never written anywhere). */
  static random(): ChainKey {
    return new ChainKey(randomBytes(32).toString('base64url'));
  }

  /** The key this process's parent gave it, taken out of the environment so that nothing it starts inherits it. */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): ChainKey | undefined {
    const secret = env[CHAIN_KEY_ENV];
    delete env[CHAIN_KEY_ENV];
    return secret && secret.length >= 32 ? new ChainKey(secret) : undefined;
  }

  mac(chain: unknown): string {
    return createHmac('sha256', this.#key).update(`delegate-mcp chain v1\0${canonicalJson(chain)}`).digest('base64url');
  }

  verify(chain: unknown, mac: unknown): boolean {
    if (typeof mac !== 'string') return false;
    const want = Buffer.from(this.mac(chain), 'base64url');
    const got = Buffer.from(mac, 'base64url');
    return got.length === want.length && timingSafeEqual(got, want);
  }
}

let fromParent: ChainKey | undefined | null = null;
/** The key of the parent that started this process, if any: read once, at start (Orchestrator.create). */
export function parentChainKey(): ChainKey | undefined {
  if (fromParent === null) fromParent = ChainKey.fromEnv();
  return fromParent;
}

/**
 * Where a run goes in the audit tree. A claimed chain's ids are not taken: the run is recorded as a root
 * (its claim beside it, `claimed_chain`), while its depth and ancestry still bound its delegations.
 */
export function recordedLineage(
  req: { chain?: CallChain; chainClaimed?: boolean; parentRunId?: string; rootRunId?: string; depth?: number },
  runId: string,
): { parentRunId: string | null; rootRunId: string; depth: number } {
  const chain = req.chainClaimed ? undefined : req.chain;
  if (chain) return { parentRunId: chain.parent_run_id, rootRunId: chain.root_run_id, depth: chain.depth };
  if (req.parentRunId) return { parentRunId: req.parentRunId, rootRunId: req.rootRunId ?? req.parentRunId, depth: req.depth ?? 1 };
  return { parentRunId: null, rootRunId: runId, depth: 0 };
}
