// defineTool (src/tools/define-tool.ts): a built-in tool's zod input is both the validator and the
// JSON Schema offered to models; unexpected exceptions become outcomes in one place.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { defineTool } from '../src/tools/define-tool.js';
import { builtinTools } from '../src/tools/registry.js';
import type { ToolContext } from '../src/tools/types.js';

const ctx: ToolContext = { workspaceRoot: '/nonexistent-workspace' };

describe('defineTool', () => {
  it('offers the JSON Schema the tools offered before zod (no $schema, required always, no 2^53 bounds)', () => {
    const names = Object.keys(builtinTools);
    assert.deepEqual(names.sort(), ['edit_file', 'fetch_url', 'list_dir', 'read_file', 'run_command', 'search_files', 'write_file']);
    for (const name of names) {
      const s = builtinTools[name].spec.inputSchema;
      assert.equal('$schema' in s, false, name);
      assert.ok(Array.isArray(s.required), name);
      assert.ok(!JSON.stringify(s).includes(String(Number.MAX_SAFE_INTEGER)), name);
    }
    assert.deepEqual(builtinTools.read_file.spec.inputSchema, {
      type: 'object',
      properties: {
        path: { type: 'string', description: 'File path, relative to the workspace root.' },
        start_line: { type: 'integer', minimum: 1, description: 'First line to return (1-based). Default: 1.' },
        end_line: { type: 'integer', minimum: 1, description: 'Last line to return (1-based, inclusive). Default: end of file.' },
      },
      required: ['path'],
      additionalProperties: false,
    });
    assert.deepEqual(builtinTools.list_dir.spec.inputSchema.required, []);
    assert.deepEqual(builtinTools.fetch_url.spec.inputSchema.properties, {
      url: { type: 'string', description: 'Absolute http:// or https:// URL.' },
      method: { type: 'string', enum: ['GET', 'POST'], description: 'HTTP method. Default "GET".' },
      body: { type: 'string', description: 'Request body (POST only).' },
    });
  });

  it('builds the schema once, on first use', async () => {
    let built = 0;
    const tool = defineTool({
      name: 'probe',
      description: 'probe',
      input: () => {
        built++;
        return z.strictObject({ a: z.string() });
      },
      run: async ({ a }) => ({ content: a, isError: false }),
    });
    assert.equal(built, 0);
    assert.equal(tool.spec.name, 'probe');
    assert.deepEqual(await tool.run({ a: 'x' }, ctx), { content: 'x', isError: false });
    assert.deepEqual(await tool.run({ a: 'y' }, ctx), { content: 'y', isError: false });
    assert.equal(built, 1);
  });

  it('maps arguments to messages that name the argument; null counts as absent only when optional', async () => {
    const seen: unknown[] = [];
    const tool = defineTool({
      name: 'probe',
      description: 'probe',
      input: () => z.strictObject({ a: z.string(), n: z.int().optional(), list: z.array(z.string()).optional() }),
      run: async (args) => {
        seen.push(args);
        return { content: 'ran', isError: false };
      },
    });
    const cases: [unknown, string][] = [
      [[], 'probe: arguments must be a JSON object, got array'],
      [{}, 'probe: missing required argument "a" (a string)'],
      [{ a: null }, 'probe: "a" must be a string, got null'],
      [{ a: 'x', n: 2.5 }, 'probe: "n" must be an integer, got 2.5'],
      [{ a: 'x', list: ['ok', 3] }, 'probe: list[1] must be a string, got number'],
      // Unknown arguments are reported first, before the complaints they probably explain.
      [{ b: 'x' }, 'probe: unknown argument "b" (expected: a, n, list)'],
    ];
    for (const [args, message] of cases) {
      assert.deepEqual(await tool.run(args as Record<string, unknown>, ctx), { content: message, isError: true }, JSON.stringify(args));
    }
    assert.equal(seen.length, 0, 'run is never called with invalid arguments');
    assert.deepEqual(await tool.run({ a: 'x', n: null, list: null }, ctx), { content: 'ran', isError: false });
    assert.deepEqual(seen, [{ a: 'x' }]);
  });

  it('fetch_url takes its method in any case and quotes a wrong one as written', async () => {
    const run = (args: Record<string, unknown>) => builtinTools.fetch_url.run(args, ctx);
    assert.deepEqual(await run({ url: 'http://example.test/', method: 'put' }), {
      content: 'fetch_url: "method" must be "GET" or "POST", got "put"',
      isError: true,
    });
    // "get" is accepted (the body rule sees it as GET): only the refusal of a body proves it parsed.
    assert.deepEqual(await run({ url: 'http://example.test/', method: 'get', body: 'x' }), {
      content: 'fetch_url: "body" is only allowed with method "POST"',
      isError: true,
    });
  });

  it('turns an unexpected exception into an internal-error outcome', async () => {
    const tool = defineTool({
      name: 'probe',
      description: 'probe',
      input: () => z.strictObject({}),
      run: async () => {
        throw new Error('disk on fire');
      },
    });
    assert.deepEqual(await tool.run({}, ctx), { content: 'probe: internal error: disk on fire', isError: true });
  });
});
