// Adapter factory: one adapter per endpoint, chosen by wire format.

import { AnthropicAdapter } from './anthropic.js';
import { OpenAIChatAdapter } from './openai-chat.js';
import { OpenAIResponsesAdapter } from './openai-responses.js';
import { missingKey } from './shared.js';
import { ProviderError, type ProviderAdapter } from './types.js';
import type { ProviderEndpoint } from '../contract/endpoint.js';

export { AnthropicAdapter } from './anthropic.js';
export { OpenAIChatAdapter } from './openai-chat.js';
export { OpenAIResponsesAdapter } from './openai-responses.js';
export * from './types.js';

/**
 * Build the adapter for an endpoint. A missing API key is reported here, before any request,
 * as ProviderError('auth') ("anthropic: ANTHROPIC_API_KEY is not set (...)"); the orchestrator
 * prefixes the agent name. (The adapters re-check in stream(), so either place catches it.)
 */
export function createAdapter(endpoint: ProviderEndpoint): ProviderAdapter {
  assertEndpointUsable(endpoint);
  // Adapters (and their SDK clients) are reused per endpoint: runs in a worker share them.
  const key = JSON.stringify(endpoint);
  let adapter = adapters.get(key);
  if (!adapter) {
    if (adapters.size >= 64) adapters.clear();
    adapter = buildAdapter(endpoint);
    adapters.set(key, adapter);
  }
  return adapter;
}

const adapters = new Map<string, ProviderAdapter>();

function buildAdapter(endpoint: ProviderEndpoint): ProviderAdapter {
  switch (endpoint.wireApi) {
    case 'anthropic':
      return new AnthropicAdapter(endpoint);
    case 'openai-responses':
      return new OpenAIResponsesAdapter(endpoint);
    case 'openai-chat':
      return new OpenAIChatAdapter(endpoint);
    default:
      throw new ProviderError(
        'bad_request',
        `${endpoint.provider}: unknown wireApi "${String((endpoint as { wireApi: unknown }).wireApi)}" (expected anthropic, openai-responses or openai-chat)`,
      );
  }
}

/** Throws ProviderError('auth') when the endpoint has no API key. Safe to call at config time. */
export function assertEndpointUsable(endpoint: ProviderEndpoint): void {
  if (!endpoint.apiKey) throw missingKey(endpoint);
}
