// create_agent's drafting as orchestrator runs of the built-in drafter agent (agents/create.ts holds the
// rest: the drafter's definition, validation, clamping, registration). Here, not in agents/: the agent
// layer knows no orchestrator; the orchestrator runs agents.
import { CreateAgentError, DRAFTER_AGENT, drafterDefinition, type DraftFn } from '../agents/create.js';
import { totalTokens } from '../contract/usage-sum.js';
import type { RunLauncher } from './launcher.js';
import type { RunRequest } from './orchestrator.js';

/**
 * Drafting as orchestrator runs of the built-in agent: every attempt passes the budget gate (the
 * caller's `budget` caps the whole create_agent call: a second attempt gets what the first left),
 * is audited, reports progress and stops on `signal`.
 */
export function draftThroughOrchestrator(
  /** The orchestrator, or the launcher a session starts its runs with (transports may limit them). */
  orchestrator: Pick<RunLauncher, 'run'>,
  modelRef: string,
  opts: Pick<RunRequest, 'owner' | 'signal' | 'onProgress' | 'budget' | 'caller'>,
): DraftFn {
  const definition = drafterDefinition(modelRef);
  let spentTokens = 0;
  let spentUsd = 0;
  return async (task) => {
    const b = opts.budget;
    const budget = b && {
      ...(b.run_tokens !== undefined && { run_tokens: Math.max(b.run_tokens - spentTokens, Number.MIN_VALUE) }),
      ...(b.run_usd !== undefined && { run_usd: Math.max(b.run_usd - spentUsd, Number.MIN_VALUE) }),
    };
    const r = await orchestrator.run({ ...opts, budget, agent: DRAFTER_AGENT, definition, input: { task } });
    spentTokens += totalTokens(r.usage);
    spentUsd += r.cost_usd ?? 0;
    if (r.status !== 'ok') throw new CreateAgentError(`drafting run ${r.run_id} ${r.status}: ${r.error ?? 'no answer'}`);
    return r.output;
  };
}
