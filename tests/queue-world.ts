// The world the queue-mode e2e files share: Redis's presence, a test's key prefix and workspace, the
// fronts and workers it starts (separate processes of the built CLI), and a Redis link the test can cut.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Redis } from 'ioredis';
import { REDIS_URL, redisUp, reportMissingRedis } from './redis-check.js';

export { REDIS_URL };
import { CLI, mockEnv, startServer, tempDir, writeTree, type ServerHandle } from './helpers.js';
import { startHttpServer, type HttpServer } from './http-helpers.js';
import type { MockModel } from './mock-model/server.js';

export const MODEL = 'anthropic/claude-sonnet-5-5';

/** One test's world: a prefix in Redis, a workspace, and the processes it started. */
export class World {
  readonly prefix = `dmcp-test-${randomBytes(4).toString('hex')}`;
  /** The queue key every node of this world shares (each node has its own state dir, as on separate machines). */
  readonly key = randomBytes(32).toString('base64url');
  readonly ws = tempDir('dmcp-queue-ws-');
  private readonly procs: ChildProcess[] = [];
  private readonly closers: (() => Promise<void>)[] = [];
  constructor(readonly mock: MockModel, agents: Record<string, string>, mcp: Record<string, unknown> = {}) {
    writeTree(this.ws, { ...Object.fromEntries(Object.entries(agents).map(([n, y]) => [`agents/${n}.yaml`, y])), 'mcp.json': JSON.stringify({ delegate: { watch: false, ...mcp } }) });
  }

  /** Each node its own state dir (its own audit log), as on separate machines. */
  env(node: string, extra: Record<string, string> = {}): Record<string, string> {
    return mockEnv(this.mock.url, { XDG_STATE_HOME: path.join(this.ws, '..', `${path.basename(this.ws)}-state-${node}`), DELEGATE_MCP_QUEUE_PREFIX: this.prefix, DELEGATE_MCP_QUEUE_KEY: this.key, DELEGATE_MCP_LOG_LEVEL: 'info', ...extra });
  }

  auditDir(node: string): string {
    const base = path.join(this.ws, '..', `${path.basename(this.ws)}-state-${node}`, 'delegate-mcp');
    const [id] = readdirSync(base);
    return path.join(base, id, 'audit');
  }

  auditEvents(node: string): any[] {
    const dir = this.auditDir(node);
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((f) => f.endsWith('.jsonl'))
      .flatMap((f) => readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)));
  }

  /** A worker process; `url`: reach Redis another way (a cuttable proxy); `env`: more of its environment. */
  async worker(node: string, args: string[] = [], url = REDIS_URL, env: Record<string, string> = {}): Promise<{ child: ChildProcess; stderr: () => string; health?: string; exited: Promise<number | string> }> {
    const child = spawn(process.execPath, [CLI, 'worker', '--queue', url, '--workspace', this.ws, ...args], { env: this.env(node, env), stdio: ['ignore', 'pipe', 'pipe'] });
    this.procs.push(child);
    let stderr = '';
    const exited = new Promise<number | string>((resolve) => child.on('exit', (code, sig) => resolve(code ?? sig ?? -1)));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker ${node} did not start:\n${stderr}`)), 15_000);
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (/taking runs from/.test(stderr)) {
          clearTimeout(timer);
          resolve();
        }
      });
      void exited.then((code) => reject(new Error(`worker ${node} exited (${code}):\n${stderr}`)));
    });
    return { child, stderr: () => stderr, health: /health on (http:\S+)/.exec(stderr)?.[1], exited };
  }

  /** `client`: its era, and how it answers approval forms (helpers.startServer). */
  async stdioFront(node: string, args: string[] = [], env: Record<string, string> = {}, client: Pick<Parameters<typeof startServer>[0], 'era' | 'elicit'> = {}): Promise<ServerHandle> {
    const h = await startServer({ args: ['--queue', REDIS_URL, '--workspace', this.ws, ...args], env: this.env(node, env), ...client });
    this.closers.push(h.close);
    return h;
  }

  async httpFront(node: string): Promise<HttpServer> {
    const h = await startHttpServer({ args: ['--queue', REDIS_URL, '--workspace', this.ws], env: this.env(node) });
    this.closers.push(h.stop);
    return h;
  }

  async close(): Promise<void> {
    for (const c of this.closers) await c().catch(() => {});
    for (const p of this.procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    const r = new Redis(REDIS_URL);
    let cursor = '0';
    do {
      const [next, found] = await r.scan(cursor, 'MATCH', `${this.prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (found.length) await r.del(...found);
    } while (cursor !== '0');
    r.disconnect();
  }
}

export const structured = (res: any) => res.structuredContent as any;

/** A TCP proxy to Redis that the test can cut (every connection dropped, new ones refused) and restore. */
export async function cuttableRedis(): Promise<{ url: string; cut: () => void; restore: () => void; close: () => void }> {
  const target = new URL(REDIS_URL);
  const sockets = new Set<net.Socket>();
  let open = true;
  const proxy = net.createServer((client) => {
    if (!open) return client.destroy();
    const upstream = net.connect(Number(target.port || 6379), target.hostname);
    client.pipe(upstream).pipe(client);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => s.destroy());
      s.on('close', () => sockets.delete(s));
    }
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
  const dropAll = () => {
    for (const s of sockets) s.destroy();
  };
  return {
    url: `redis://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`,
    cut: () => {
      open = false;
      dropAll();
    },
    restore: () => (open = true),
    close: () => {
      proxy.close();
      dropAll();
    },
  };
}

/**
 * A Redis server of the test's own (redis-server on a free port, its data in an append-only file synced
 * on every write, in a temp dir) that the test stops and starts again: a restart as it happens, its data
 * kept. undefined, with the skip printed (under CI=true: an error), when this machine has no redis-server.
 */
export async function ownRedis(): Promise<{ url: string; stop: () => Promise<void>; start: () => Promise<void>; close: () => Promise<void> } | undefined> {
  if (spawnSync('redis-server', ['--version']).error) {
    const msg = 'no redis-server binary on PATH: the Redis restart test skipped (apt-get install redis-server)';
    if (process.env.CI === 'true') throw new Error(`${msg}; CI=true requires it`);
    process.stderr.write(`SKIP ${msg}\n`);
    return undefined;
  }
  const dir = tempDir('dmcp-own-redis-');
  const port = await new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (probe.address() as net.AddressInfo).port;
      probe.close(() => resolve(p));
    });
  });
  let server: ChildProcess | undefined;
  const start = async () => {
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--dir', dir], { stdio: 'ignore' });
    server = child;
    const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    probe.on('error', () => {}); // not up yet: tried again below
    try {
      for (let i = 0; ; i++) {
        if (child.exitCode !== null) throw new Error(`redis-server on port ${port} exited (${child.exitCode})`);
        if (await probe.connect().then(() => probe.ping(), () => undefined)) return;
        if (i > 100) throw new Error(`redis-server on port ${port} did not answer within 5 s`);
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      probe.disconnect();
    }
  };
  // SIGTERM: Redis syncs its append-only file and exits, as at a service stop.
  const stop = async () => {
    const child = server;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  };
  await start();
  return { url: `redis://127.0.0.1:${port}/0`, stop, start, close: stop };
}

/** Prints the skip, or fails under CI=true, when Redis is not there; true when it is. */
export async function redisOrSkip(): Promise<boolean> {
  const available = await redisUp();
  if (!available) reportMissingRedis('the queue-mode e2e tests');
  return available;
}

/** Holds every model answer ("answer: <task>") until `release()`: runs stay at the model while a test acts. */
export function holdModel(mock: MockModel): { release: () => void } {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  mock.setHandler(async (req) => {
    await released;
    return { text: `answer: ${req.lastUserText}` };
  });
  return { release: () => release() };
}
