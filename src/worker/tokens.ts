// Pre-call input token estimate with a real tokenizer (o200k). Exact for current OpenAI models; the
// orchestrator scales it for other model families. Loaded once per worker (module scope).
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import type { Message, ToolSpec } from '../providers/types.js';

/** Per-message framing overhead the wire formats add (role markers, separators). */
const PER_MESSAGE = 4;

export function estimateInputTokens(system: string, messages: Message[], tools: ToolSpec[]): number {
  let n = countTokens(system) + PER_MESSAGE;
  for (const m of messages) {
    n += PER_MESSAGE;
    if (m.role === 'user') n += countTokens(m.content);
    else if (m.role === 'assistant') {
      n += countTokens(m.text);
      for (const c of m.toolCalls) n += countTokens(c.name) + countTokens(JSON.stringify(c.arguments)) + PER_MESSAGE;
    } else for (const r of m.results) n += countTokens(r.content) + PER_MESSAGE;
  }
  for (const t of tools) n += countTokens(t.name) + countTokens(t.description) + countTokens(JSON.stringify(t.inputSchema));
  return n;
}
