// `delegate-mcp ui`: the runs page (/ui) for a local state dir, without serving MCP. It reads the audit
// log that `serve` processes write, so it shows their runs live. Always behind a bearer token (from
// DELEGATE_MCP_TOKEN, or a random one printed once to stderr) and the same Host/Origin checks as /mcp.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Command } from 'commander';
import { loadConfig, type ConfigOverrides } from '../config/config.js';
import { ConfigError } from '../config/config-error.js';
import { openStateDir } from '../config/state-dir.js';
import { allowedHostnames, BearerToken } from '../transports/http-auth.js';
import { isLoopbackHost } from '../net/loopback.js';
import { createUiHandler } from '../ui/handler.js';
import { log } from '../log.js';

interface UiCliOptions extends ConfigOverrides {
  host?: string;
  port?: string;
}

export function registerUiCommand(program: Command, common: { addCommon: (cmd: Command) => Command }): void {
  common
    .addCommon(program.command('ui').description('serve the runs page (/ui) for this workspace\'s audit log: live runs, delegation trees, timelines, denials'))
    .option('--host <host>', 'bind address (default 127.0.0.1)', '127.0.0.1')
    .option('--port <port>', 'port, 0 for a free one (default 8809)', '8809')
    .action(async (opts: UiCliOptions) => {
      const cfg = loadConfig(opts);
      openStateDir(cfg);
      if (!cfg.auditDir) throw new ConfigError('the audit log is switched off (delegate.audit.enabled: false): the runs page is built from it');
      const port = Number(opts.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError(`--port: expected 0-65535, got "${opts.port}"`);
      const host = opts.host ?? '127.0.0.1';
      const fromEnv = process.env.DELEGATE_MCP_TOKEN;
      if (!isLoopbackHost(host) && !fromEnv) throw new ConfigError(`--host ${host} is not loopback: set DELEGATE_MCP_TOKEN to the token the page should ask for`);
      const secret = fromEnv || randomBytes(18).toString('base64url');
      const { hostHeaderValidation, originValidation } = await import('@modelcontextprotocol/node');
      const names = allowedHostnames(host, []);
      const validateHost = names ? hostHeaderValidation(names) : undefined;
      const validateOrigin = originValidation(['localhost', '127.0.0.1', '[::1]']);
      const ui = createUiHandler({ auditDir: cfg.auditDir, token: new BearerToken(secret) });
      const server = http.createServer((req, res) => {
        if (validateHost && !validateHost(req, res)) return;
        if (!validateOrigin(req, res)) return;
        const url = new URL(req.url ?? '/', 'http://localhost');
        const pathname = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname;
        if (pathname === '/') {
          res.writeHead(302, { location: '/ui' });
          res.end();
          return;
        }
        if (!ui.handle(req, res, pathname, url)) {
          res.writeHead(404, { 'content-type': 'text/plain' });
          res.end('not found (the runs page is at /ui)');
        }
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err: NodeJS.ErrnoException) =>
          reject(err.code === 'EADDRINUSE' ? new ConfigError(`--port ${port}: address in use (pick another, or 0 for a free one)`) : err),
        );
        server.listen(port, host, () => resolve());
      });
      const addr = server.address() as AddressInfo;
      const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
      process.stderr.write(
        `runs page: http://${shown}:${addr.port}/ui  (audit log ${cfg.auditDir})\n${fromEnv ? 'token: the value of DELEGATE_MCP_TOKEN' : `token: ${secret}`}\n`,
      );
      const stop = () => {
        ui.close();
        server.close();
        server.closeAllConnections();
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      log.debug('ui: serving');
    });
}
