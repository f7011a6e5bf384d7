// Baseline for `npm run bench`: the thinnest MCP server that does the same work as one delegate-mcp
// agent call — one streaming Anthropic Messages request made directly in the tool handler, no pool,
// no orchestrator, no agent loop. Plain JS so no loader (tsx) cost lands in the baseline.
//
//   ANTHROPIC_API_KEY=x ANTHROPIC_BASE_URL=http://127.0.0.1:PORT node bench/bare-server.mjs
import Anthropic from '@anthropic-ai/sdk';
import { McpServer } from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import { z } from 'zod';

const MODEL = process.env.BARE_MODEL ?? 'claude-bench';
const TOOL = process.env.BARE_TOOL ?? 'bench-agent';
// One client for the process (the SDK reads ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL itself).
const anthropic = new Anthropic({ maxRetries: 0 });

function factory() {
  const server = new McpServer({ name: 'bare-bench', version: '1.0.0' });
  server.registerTool(
    TOOL,
    {
      description: 'Baseline: one streaming model call made directly in the tool handler.',
      inputSchema: z.object({ task: z.string() }),
    },
    async ({ task }, ctx) => {
      const stream = await anthropic.messages.create(
        { model: MODEL, max_tokens: 4096, messages: [{ role: 'user', content: task }], stream: true },
        { signal: ctx.mcpReq.signal },
      );
      let text = '';
      for await (const ev of stream) {
        if (ev.type === 'content_block_delta' && ev.delta.type === 'text_delta') text += ev.delta.text;
      }
      return { content: [{ type: 'text', text }] };
    },
  );
  return server;
}

serveStdio(factory, { onerror: (err) => process.stderr.write(`bare-server: ${err.message}\n`) });
// Keep-alive sockets to the model would otherwise outlive the client.
process.stdin.on('end', () => process.exit(0));
