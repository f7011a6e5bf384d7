// Pre-call input token estimates with a real tokenizer (o200k: exact for current OpenAI models; the
// orchestrator scales it for other families). The tables cost ~33 MB of heap and ~140 ms to load,
// so a worker loads them once, and only when a run needs estimates (budgets are configured).
import type { Message } from '../contract/message.js';
import type { ToolSpec } from '../contract/tool.js';

type CountFn = (text: string) => number;
let counter: Promise<CountFn> | undefined;

export function loadTokenizer(): Promise<CountFn> {
  counter ??= import('gpt-tokenizer/encoding/o200k_base').then((m) => {
    m.countTokens('warm up'); // pay the one-time initialisation here, not inside a timed model call
    return m.countTokens;
  });
  return counter;
}

/** Per-message framing overhead the wire formats add (role markers, separators). */
const PER_MESSAGE = 4;

export async function estimateInputTokens(system: string, messages: Message[], tools: ToolSpec[]): Promise<number> {
  const countTokens = await loadTokenizer();
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
