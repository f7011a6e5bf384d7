// Build: type-check with tsc, then bundle the entry points (the CLI, the piscina worker, the search_files
// regex worker) with esbuild. Bundling cuts start-up: loading hundreds of small ES modules (zod alone has hundreds) cost
// ~100 ms of a ~350 ms cold start; clients such as Codex do not wait for slow servers.
import { execFileSync } from 'node:child_process';
import { chmodSync, rmSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

// typescript's package exports hide bin/tsc; its path is fixed, so call it directly.
execFileSync(process.execPath, [path.join('node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json', '--noEmit'], { stdio: 'inherit' });
rmSync('dist', { recursive: true, force: true });
await build({
  entryPoints: { cli: 'src/main.ts', 'worker/agent-loop': 'src/worker/agent-loop.ts', 'tools/search-worker': 'src/tools/search-worker.ts' },
  outdir: 'dist',
  bundle: true,
  splitting: true, // lazily imported parts (HTTP, client SDK, tokenizer) stay in chunks of their own
  format: 'esm',
  platform: 'node',
  target: 'node20',
  chunkNames: 'chunks/[name]-[hash]',
  // piscina finds its own worker script next to itself; the tokenizer tables load lazily in workers.
  // re2-wasm loads its .wasm from next to its own file.
  // ajv (output_schema checks) loads on first use through createRequire, from node_modules.
  // ioredis is queue mode's connection (the Redis budget ledger, BullMQ); BullMQ loads its Lua scripts
  // from its own package folder. Both are imported lazily: the embedded default never loads them.
  external: ['piscina', 'gpt-tokenizer', 're2-wasm', 'ajv', 'ioredis', 'bullmq'],
  // CommonJS dependencies bundled into ESM still call require() for Node built-ins.
  banner: { js: "import { createRequire as __dmcpCreateRequire } from 'node:module'; const require = __dmcpCreateRequire(import.meta.url);" },
  sourcemap: true,
  logLevel: 'warning',
});
chmodSync('dist/cli.js', 0o755);
