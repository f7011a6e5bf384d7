// Model references in agent YAML look like "<provider>/<model id>". Only the FIRST slash separates:
// model ids may contain slashes themselves (e.g. "openrouter/meta-llama/llama-3-70b").
import { ConfigError } from './config-error.js';

export interface ModelRef {
  provider: string;
  model: string;
}

export function parseModelRef(ref: string): ModelRef {
  const trimmed = ref.trim();
  const slash = trimmed.indexOf('/');
  const example = 'e.g. "anthropic/claude-sonnet-5-5" or "openai/gpt-5"';
  if (slash < 0) {
    throw new ConfigError(`invalid model "${ref}": expected "<provider>/<model>", ${example}`);
  }
  const provider = trimmed.slice(0, slash).trim();
  const model = trimmed.slice(slash + 1).trim();
  if (!provider) throw new ConfigError(`invalid model "${ref}": provider before "/" is empty, ${example}`);
  if (!model) throw new ConfigError(`invalid model "${ref}": model id after "${provider}/" is empty, ${example}`);
  return { provider, model };
}
