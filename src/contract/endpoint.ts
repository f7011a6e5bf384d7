// How to reach one model endpoint: plain data, built from the config on the main thread and sent to a
// worker with each run.
import { z } from 'zod';

export const WireApi = z.enum(['anthropic', 'openai-responses', 'openai-chat']);
export type WireApi = z.infer<typeof WireApi>;

export const ProviderEndpoint = z.object({
  /** Provider name as used in `model: <provider>/<id>` (anthropic, openai, openai-chat, or a custom name). */
  provider: z.string(),
  wireApi: WireApi,
  baseURL: z.string().optional(),
  apiKey: z.string().optional(),
  /** Name of the env var the key came from (or should have come from), for error messages. */
  apiKeyEnv: z.string().optional(),
  headers: z.record(z.string(), z.string()).optional(),
  maxRetries: z.number(),
  requestTimeoutMs: z.number(),
  streamIdleTimeoutMs: z.number(),
});
export type ProviderEndpoint = z.infer<typeof ProviderEndpoint>;
