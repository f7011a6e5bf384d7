// Where this package lives on disk. The build bundles code into dist/cli.js, dist/worker/agent-loop.js
// and shared chunks, so a module cannot know its own depth: walk up to our package.json instead.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function findPackageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'delegate-mcp') return dir;
      } catch {
        /* not ours; keep walking */
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`delegate-mcp: cannot find its package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

export const PACKAGE_ROOT = findPackageRoot();
export const PACKAGE_JSON = path.join(PACKAGE_ROOT, 'package.json');
/** The CLI entry (what a re-entry child runs) and the piscina worker entry, both built into dist/. */
export const CLI_ENTRY = path.join(PACKAGE_ROOT, 'dist', 'cli.js');
export const WORKER_ENTRY = path.join(PACKAGE_ROOT, 'dist', 'worker', 'agent-loop.js');
/** The agents shipped with this install (served after the workspace's and the user's). */
export const SHIPPED_AGENTS_DIR = path.join(PACKAGE_ROOT, 'agents');
/** The worker thread search_files matches lines in (see tools/line-search.ts). */
export const SEARCH_WORKER_ENTRY = path.join(PACKAGE_ROOT, 'dist', 'tools', 'search-worker.js');
