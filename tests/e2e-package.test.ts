// The installable package: `npm pack` → `npm install -g <tgz>` into a temp prefix gives a `delegate-mcp`
// that serves the shipped agents from any directory (here "/"), through a real MCP stdio client; and
// `npx file:<tgz> serve` works too. npm resolves the two runtime dependencies from its cache (--prefer-offline:
// `npm ci` put their tarballs there; on a cold cache npm may still fetch their metadata).
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';
import { ROOT, tempDir } from './helpers.js';

const execFileP = promisify(execFile);
const SHIPPED = readdirSync(path.join(ROOT, 'agents')).filter((f) => f.endsWith('.yaml')).map((f) => f.replace(/\.yaml$/, ''));
const npmCache = execFileSync('npm', ['config', 'get', 'cache'], { encoding: 'utf8' }).trim();
/**
 * This machine's way to the registry (a TLS-inspecting proxy's CA file, a proxy, a mirror), from its npm
 * config and environment. The install below runs with its own HOME and --prefix, so npm reads neither
 * the user's nor the global npmrc: without these, a registry behind such a proxy answers
 * SELF_SIGNED_CERT_IN_CHAIN, which npm retries with backoff for minutes (the "hang" seen in CI runs).
 */
function registryAccess(): Record<string, string> {
  const out: Record<string, string> = {};
  const keys = ['registry', 'cafile', 'ca', 'proxy', 'https-proxy', 'noproxy', 'strict-ssl'];
  for (const line of execFileSync('npm', ['config', 'get', ...keys], { encoding: 'utf8' }).split('\n')) {
    const eq = line.indexOf('=');
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1).trim();
    if (eq > 0 && keys.includes(key) && value !== '' && value !== 'null' && value !== 'undefined') out[`npm_config_${key.replace(/-/g, '_')}`] = value;
  }
  for (const name of ['NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'HTTPS_PROXY', 'HTTP_PROXY', 'NO_PROXY', 'https_proxy', 'http_proxy', 'no_proxy']) {
    const value = process.env[name];
    if (value) out[name] = value;
  }
  return out;
}

async function listTools(command: string, args: string[], env: Record<string, string>): Promise<string[]> {
  const transport = new StdioClientTransport({ command, args, env, cwd: '/', stderr: 'pipe' });
  let stderr = '';
  transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const client = new Client({ name: 'package-test', version: '1.0.0' });
  try {
    await client.connect(transport);
    return (await client.listTools()).tools.map((t) => t.name);
  } catch (err) {
    throw new Error(`${command} ${args.join(' ')} failed: ${(err as Error).message}\n${stderr}`);
  } finally {
    await client.close().catch(() => {}); // already closed when connect failed
  }
}

describe('installable package', () => {
  let tmp: string;
  let tgz: string;
  let prefix: string;
  let env: Record<string, string>;

  before(async () => {
    tmp = tempDir('dmcp-pkg-');
    // dist/ is already built (npm test builds first); --ignore-scripts packs exactly that.
    const { stdout } = await execFileP('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { cwd: ROOT, maxBuffer: 16 << 20 });
    tgz = path.join(tmp, JSON.parse(stdout)[0].filename);
    prefix = path.join(tmp, 'prefix');
    const home = tempDir('dmcp-pkg-home-');
    env = {
      PATH: `${path.join(prefix, 'bin')}:${path.dirname(process.execPath)}:/usr/bin:/bin`,
      HOME: home,
      XDG_CONFIG_HOME: path.join(home, '.config'),
      ...registryAccess(),
      npm_config_cache: npmCache,
      npm_config_update_notifier: 'false',
      DELEGATE_MCP_LOG_LEVEL: 'warn',
    };
    // A registry npm cannot reach (see registryAccess) is retried with backoff for minutes: one more try
    // after 90 s, and npm's own log in the failure if that hangs too.
    const install = () => execFileP('npm', ['install', '-g', tgz, '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel', 'http'], { env, cwd: tmp, timeout: 90_000, maxBuffer: 16 << 20 });
    await install().catch((err: { killed?: boolean; stderr?: string }) => {
      if (!err.killed) throw err;
      process.stderr.write(`e2e-package: npm install -g did not finish in 90 s, trying once more; its log ended with:\n${(err.stderr ?? '').slice(-3000)}\n`);
      return install();
    });
  });

  it('the package holds dist/, the shipped agents and no sources; only runtime deps are dependencies', () => {
    const listed = execFileSync('tar', ['-tzf', tgz], { encoding: 'utf8' }).split('\n');
    assert.ok(listed.includes('package/dist/cli.js'));
    assert.ok(listed.includes('package/dist/worker/agent-loop.js'));
    for (const n of SHIPPED) assert.ok(listed.includes(`package/agents/${n}.yaml`), n);
    assert.ok(!listed.some((f) => f.startsWith('package/src/') || f.startsWith('package/tests/')));
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    // Runtime dependencies are exactly what the build leaves out of the bundle (its `external` list).
    const external = /external:\s*\[([^\]]*)\]/.exec(readFileSync(path.join(ROOT, 'scripts', 'build.mjs'), 'utf8'))![1];
    const externals = [...external.matchAll(/'([^']+)'/g)].map((m) => m[1]).sort();
    assert.ok(externals.length >= 2, external);
    assert.deepEqual(Object.keys(pkg.dependencies).sort(), externals);
  });

  it('the global install serves the shipped agents from cwd "/" and lists them with their source', async () => {
    const bin = path.join(prefix, 'bin', 'delegate-mcp');
    const names = await listTools(bin, ['serve'], env);
    for (const n of [...SHIPPED, 'list_agents', 'delegate']) assert.ok(names.includes(n), `missing ${n}: ${names}`);
    const { stdout } = await execFileP(bin, ['agents', 'list', '--json'], { env, cwd: '/' });
    const agents = JSON.parse(stdout).agents;
    assert.equal(agents.length, SHIPPED.length);
    for (const a of agents) {
      assert.equal(a.source, 'shipped');
      assert.ok(a.file.startsWith(path.join(prefix, 'lib', 'node_modules', 'delegate-mcp', 'agents')), a.file);
    }
  });

  it('npx file:<tgz> serve answers tools/list', async () => {
    const names = await listTools('npx', ['--yes', '--prefer-offline', `file:${tgz}`, 'serve'], env);
    for (const n of SHIPPED) assert.ok(names.includes(n), `missing ${n}: ${names}`);
  });
});
