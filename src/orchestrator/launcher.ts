// What starts runs, as the MCP surface and the batch service see it. The Orchestrator is one; a
// transport may hand the surface a wrapper that composes one (per-session run slots, a session's
// asker) — written out as a class that holds the launcher it wraps, so "go to definition" on `run`
// lands on the code that runs.
import type { RunRequest } from './orchestrator.js';
import type { RunResult } from '../contract/run.js';
import type { RunRecord } from './runs.js';

export interface RunLauncher {
  /** Starts a run and returns its record at once; `record.done` settles with the result (never rejects). */
  start(req: RunRequest): RunRecord;
  /** Runs to the end; never rejects (a failure is a result with its status). */
  run(req: RunRequest): Promise<RunResult>;
}
