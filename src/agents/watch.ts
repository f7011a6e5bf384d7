// Hot reload: watches the agent directories and reloads the store shortly after files change. The
// store's 'change' event does the rest (every live MCP session updates its tools and its client gets
// notifications/tools/list_changed; see src/mcp/agent-tools.ts).
//
// fs.watch on each directory (not recursive: agent files live directly in it), debounced, because an
// editor's save is several events (write a temp file, rename it over the old one). A directory that is
// missing (the default .claude/agents, .codex/agents) or that was removed and made again is picked up
// by a slow check every couple of seconds. Watchers never keep the process alive.
import { watch, type FSWatcher } from 'node:fs';
import { log } from '../log.js';
import { formatLoadError, type AgentCatalog, type AgentDefinition } from './definition.js';
import { dirExists } from './formats.js';
import type { AgentStore } from './store.js';
import { errorMessage } from '../describe-cause.js';

export interface AgentWatcher {
  /** Reload now (also what file events trigger, after the debounce). */
  reloadNow(): void;
  close(): void;
}

export interface WatchOptions {
  /** Quiet period after the last file event before reloading (ms). */
  debounceMs?: number;
  /** How often missing or lost directories are looked for again (ms). */
  rescanMs?: number;
}

export function watchAgents(store: AgentStore, opts: WatchOptions = {}): AgentWatcher {
  const debounceMs = opts.debounceMs ?? 150;
  const rescanMs = opts.rescanMs ?? 2000;
  const watchers = new Map<string, FSWatcher>();
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  let reported = new Set(store.formattedErrors());
  let previous = new Map(store.list().map((a) => [a.name, a]));

  const reloadNow = () => {
    if (closed) return;
    clearTimeout(timer);
    timer = undefined;
    let catalog: AgentCatalog;
    try {
      catalog = store.reload();
    } catch (err) {
      // One line like every other server error; the stack only at debug level (DELEGATE_MCP_LOG_LEVEL=debug).
      log.error(`agent reload failed: ${errorMessage(err)}`);
      if (err instanceof Error && err.stack) log.debug(err.stack);
      return;
    }
    logChanges(previous, catalog.agents);
    previous = new Map(catalog.agents);
    // Report each problem once, when it appears (it stays in list_agents until fixed).
    const now = new Set(catalog.errors.map(formatLoadError));
    for (const e of now) if (!reported.has(e)) log.error(`agent file error: ${e}`);
    reported = now;
  };

  const schedule = () => {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(reloadNow, debounceMs);
    timer.unref();
  };

  const start = (dir: string): boolean => {
    if (watchers.has(dir) || !dirExists(dir)) return false;
    try {
      const w = watch(dir, { persistent: false }, () => schedule());
      w.on('error', (err) => {
        log.warn(`watching ${dir} stopped (${err.message}); looking for it again every ${rescanMs} ms`);
        w.close();
        watchers.delete(dir);
        schedule();
      });
      watchers.set(dir, w);
      return true;
    } catch (err) {
      log.warn(`cannot watch ${dir}: ${errorMessage(err)}`);
      return false;
    }
  };

  for (const s of store.sources) start(s.dir);
  // Directories that appear later (or come back after being removed): watch them and reload.
  const rescan = setInterval(() => {
    let added = false;
    for (const s of store.sources) {
      const w = watchers.get(s.dir);
      if (w && !dirExists(s.dir)) {
        w.close();
        watchers.delete(s.dir);
        schedule();
      } else if (!w && start(s.dir)) added = true;
    }
    if (added) schedule();
  }, rescanMs);
  rescan.unref();

  log.debug(`watching agent directories: ${[...watchers.keys()].join(', ') || '(none present)'}`);
  return {
    reloadNow,
    close: () => {
      closed = true;
      clearTimeout(timer);
      clearInterval(rescan);
      for (const w of watchers.values()) w.close();
      watchers.clear();
    },
  };
}

function logChanges(before: Map<string, AgentDefinition>, after: Map<string, AgentDefinition>): void {
  const added = [...after.keys()].filter((n) => !before.has(n));
  const removed = [...before.keys()].filter((n) => !after.has(n));
  const changed = [...after.keys()].filter((n) => before.has(n) && JSON.stringify(before.get(n)) !== JSON.stringify(after.get(n)));
  if (added.length + removed.length + changed.length === 0) return;
  const parts = [
    added.length ? `added ${added.join(', ')}` : '',
    changed.length ? `reloaded ${changed.join(', ')}` : '',
    removed.length ? `removed ${removed.join(', ')}` : '',
  ].filter(Boolean);
  log.info(`agents: ${parts.join('; ')}`);
}
