// The typed channel between a run's worker loop and the orchestrator (main thread). The worker holds no
// authority: it asks (model call gate, tool calls) and is told yes or no, over its thread's control channel.
// A leaf both sides import. Plain types, not zod schemas: both ends are our own code, messages are
// structured-cloned between threads and never validated (a hot path), and the worker bundle loads no zod.
import type { MessagePort } from 'node:worker_threads';
import type { ProviderEndpoint, WireApi } from './endpoint.js';
import type { JsonSchema } from './json-schema.js';
import type { StopReason } from './message.js';
import type { RunStatus } from './run.js';
import type { ToolCall, ToolOutcome, ToolSpec } from './tool.js';
import type { Usage } from './usage.js';

/** What the orchestrator tells a new worker to warm (piscina workerData), see worker/warm.ts. */
export interface WarmHint {
  wireApis: WireApi[];
  tokenizer: boolean;
}

/** What the orchestrator hands to piscina for one run (plain data; the run talks over its thread's control channel). */
export interface RunTask {
  runId: string;
  /** Only what the loop reads: the task is structured-cloned to the worker on every run. */
  agent: { name: string; maxTurns: number; maxOutputTokens: number; temperature?: number };
  /** Provider-local model id and the endpoint to reach it. */
  modelRef: string;
  modelId: string;
  endpoint: ProviderEndpoint;
  system: string;
  userMessage: string;
  tools: ToolSpec[];
  /** Whether the gate needs input token estimates (only when a budget covers the run). */
  estimateTokens: boolean;
  /**
   * A budget covers the run: the worker counts output tokens as they stream and asks the orchestrator
   * to extend the call's reservation (extend_output) before the output passes it; a refusal cuts the
   * stream. Without it nothing is counted until a stream is cut short (then, for the books).
   */
  budgeted: boolean;
  /** How many output tokens each extension asks for (the bound on overspending a cap, see README). */
  extensionStep: number;
  /** The model's learned tokenizer factor: streamed output counted with o200k is scaled by it. */
  tokenScale: number;
  /** Whether anyone follows this run's progress; without, the worker sends no progress events. */
  progress: boolean;
  /**
   * The first turn's gate, already passed on the main thread at dispatch (possible when no estimate is
   * needed): the first model request starts without a round trip.
   */
  firstTurnGranted?: { maxOutputTokens: number; reservedOutputTokens?: number };
  /** The agent's output_schema: the final answer must be JSON matching it (one repair turn, then an error). */
  outputSchema?: JsonSchema;
}

/**
 * Each worker thread opens ONE control channel to the main thread when it starts and announces it on
 * its parentPort (piscina forwards such messages as the pool's 'message' event). Every run's requests,
 * events, replies and cancels travel on it, tagged with the run id: a run needs no port of its own, so
 * starting one costs no MessageChannel, no port transfer and no close (measured ~0.2 ms of CPU a run).
 */
export const CONTROL_ANNOUNCE = 'delegate-mcp/control';
export interface ControlAnnounce {
  kind: typeof CONTROL_ANNOUNCE;
  threadId: number;
  port: MessagePort;
}
/**
 * A warning printed by a provider SDK inside a worker (e.g. "model X is deprecated"), sent to the main
 * thread's logger instead of the worker's stderr: on a terminal it then lands above a live progress
 * display instead of inside it, and it is logged once per process, not once per call or per worker.
 */
export const WORKER_WARNING = 'delegate-mcp/warning';
export interface WorkerWarning {
  kind: typeof WORKER_WARNING;
  message: string;
}
/** Main → worker, once the server has answered `initialize`: warm this thread up (see worker/warm.ts). */
export interface WarmCommand {
  kind: 'warm';
  hint: WarmHint;
}
/** Worker → main on a control channel. */
export type ControlUp = WorkerMessage & { runId: string };
/** Main → worker on a control channel (a cancel goes to every worker: only the one running it acts). */
export type ControlDown = MainMessage & { runId: string };

export interface RunOutcome {
  status: RunStatus;
  output: string;
  turns: number;
  usage: Usage;
  modelCalls: number;
  error?: string;
  /** Model calls whose end was not reported yet (the last one, usually): committed before the run settles. */
  callsEnded?: ModelCallEnd[];
}

/**
 * Worker → main requests (answered with a WorkerReply carrying the same id). Each may carry the model
 * calls that ended since the last message: the main thread commits them before it answers.
 */
export type WorkerRequest = (
  | {
      kind: 'model_call_start';
      id: number;
      turn: number;
      /** The worker thread running the turn (the hard-kill fallback needs it). */
      threadId: number;
      /** Tokenizer estimate of the prompt's input tokens, when the task asked for estimates. */
      estimatedInputTokens: number | null;
      maxOutputTokens: number;
    }
  | { kind: 'call_tool'; id: number; turn: number; call: ToolCall }
  /** The stream is about to pass the output it holds: grow the reservation (answered with reservedOutputTokens). */
  | { kind: 'extend_output'; id: number; turn: number; streamedOutputTokens: number; wantOutputTokens: number }
) & { ended?: ModelCallEnd[] };

/**
 * A model call ended (usage to commit, audit record). Not a message of its own: it rides on the run's
 * next request or on its outcome, so a one-call run crosses threads only twice (task, result), and the
 * usage is always committed before the next gate or before the run settles.
 */
export interface ModelCallEnd {
  turn: number;
  threadId: number;
  usage: Usage | null;
  streamedOutputChars: number;
  /** Output tokens streamed (tokenizer count): always for a cut stream, and while a budget watches. */
  streamedOutputTokens?: number;
  /** Raw input estimate made for the books when the gate had none (a cut stream with no budget). */
  inputEstimate?: number;
  /** The stream ended before the provider's final usage report (killed, aborted, cut by the budget). */
  cut?: boolean;
  stopReason: StopReason | 'error' | 'budget_exhausted';
  latencyMs: number;
  /** The model that answered, as the API reported it (telemetry's gen_ai.response.model). */
  responseModel?: string;
  error?: string;
}

export type MainReply =
  | { kind: 'reply'; id: number; ok: true; maxOutputTokens?: number; reservedOutputTokens?: number; outcome?: ToolOutcome }
  | { kind: 'reply'; id: number; ok: false; reason: string };

/**
 * Worker → main one-way events, sent only when someone follows the run's progress (each message
 * costs both threads a structured clone; a turn's start rides on model_call_start).
 */
export type WorkerEvent =
  | { kind: 'event'; type: 'stream_start'; turn: number }
  | { kind: 'event'; type: 'retry'; turn: number; attempt: number; delayMs: number; reason: string };

/** Main → worker one-way messages. */
export type MainCommand = { kind: 'cancel'; reason: 'cancelled' | 'timeout' };

export type WorkerMessage = WorkerRequest | WorkerEvent;
export type MainMessage = MainReply | MainCommand;
