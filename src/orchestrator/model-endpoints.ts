// What a run needs from its model before a worker is involved: the endpoint (with its key) and the
// provider-local model id. Everything here can fail with a message that names the agent file or the
// config key to fix. Endpoints are resolved once per provider: the config (and its keys) is fixed for
// the process.
import type { AgentDefinition } from '../agents/definition.js';
import { resolveEndpoint, type ResolvedConfig } from '../config/config.js';
import { parseModelRef } from '../config/model-ref.js';
import type { ProviderEndpoint } from '../contract/endpoint.js';
import { buildUserMessage } from './prompt.js';

export interface PreparedRun {
  endpoint: ProviderEndpoint;
  modelId: string;
  userMessage: string;
}

export class ModelEndpoints {
  private readonly endpoints = new Map<string, ProviderEndpoint>();

  constructor(private readonly cfg: ResolvedConfig) {}

  /** Everything that can fail before a worker is involved: model, endpoint, key. */
  prepare(agent: AgentDefinition, modelRef: string, input: Record<string, unknown>): { error: string } | PreparedRun {
    if (!modelRef) {
      return {
        error: `agent ${agent.name} has no model and no default is configured (set "model: anthropic/<id>" in ${agent.source.file}, delegate.defaultModel in mcp.json, or DELEGATE_MCP_MODEL)`,
      };
    }
    let endpoint: ProviderEndpoint;
    let modelId: string;
    try {
      const ref = parseModelRef(modelRef);
      modelId = ref.model;
      endpoint = this.endpoints.get(ref.provider) ?? resolveEndpoint(this.cfg, ref.provider);
      this.endpoints.set(ref.provider, endpoint);
    } catch (err) {
      return { error: `agent ${agent.name} uses model "${modelRef}": ${(err as Error).message}` };
    }
    if (!endpoint.apiKey) {
      return {
        error: `agent ${agent.name} uses ${modelRef}, but ${endpoint.apiKeyEnv ?? 'no API key'} is not set (set it in the server's environment or configure delegate.providers.${endpoint.provider} in mcp.json)`,
      };
    }
    // The offered tools (and the system prompt naming them) come from the tool gate when the run is
    // dispatched: listing a downstream MCP server's tools may have to start it first.
    return { endpoint, modelId, userMessage: buildUserMessage(input) };
  }
}
