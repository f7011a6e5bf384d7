// Artifacts: the deliverables an agent declares (`artifacts: [review.md]`), taken from its real final
// answer and written under <stateDir>/artifacts/<run_id>/. The system prompt asks the model to wrap each
// one in <artifact name="…">…</artifact>; with a single declared artifact and no tags, the whole answer is it.
// Artifacts belong to the client session that started the run: its owner id is kept next to them
// (OWNER_FILE), so listing and reading stay scoped to that session, across restarts too.
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ArtifactSpec } from '../agents/definition.js';
import { mayAccess } from './runs.js';
import { DAY_MS } from '../time/utc-day.js';

export interface ArtifactRef {
  name: string;
  uri: string;
  bytes: number;
}

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const RUN_DIR = /^run_[A-Za-z0-9-]+$/;
/** The run's owner id. A dot name: artifactFileName never produces one, so it cannot collide. */
const OWNER_FILE = '.owner';

/** Artifact file name on disk: the declared name when it is a plain file name, else a safe variant. */
export function artifactFileName(name: string): string {
  if (SAFE_NAME.test(name) && !name.includes('..')) return name;
  return name.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '').slice(0, 128) || 'artifact';
}

export function extractArtifacts(specs: ArtifactSpec[], output: string): { name: string; content: string }[] {
  const found: { name: string; content: string }[] = [];
  for (const spec of specs) {
    const escaped = spec.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const m = new RegExp(`<artifact\\s+name=["']${escaped}["']\\s*>\\n?([\\s\\S]*?)\\n?</artifact>`).exec(output);
    if (m) found.push({ name: spec.name, content: m[1] });
  }
  if (found.length === 0 && specs.length === 1 && output.trim()) found.push({ name: specs[0].name, content: output });
  return found;
}

/** How many runs' artifacts are kept, and for how long (delegate.artifacts.keep). */
export interface ArtifactRetention {
  count?: number;
  days?: number;
}

export class ArtifactStore {
  constructor(
    readonly dir: string,
    readonly keep: ArtifactRetention = {},
  ) {}

  /**
   * Removes the artifacts of runs beyond the newest `keep.count`, and of runs older than `keep.days`
   * (by the run folder's modification time). Returns how many run folders went. Never throws: a folder
   * that cannot be removed now is tried again next time.
   */
  prune(now = Date.now()): number {
    const { count, days } = this.keep;
    if (count === undefined && days === undefined) return 0;
    let runs: { r: string; t: number }[];
    try {
      runs = readdirSync(this.dir)
        .filter((d) => /^run_[A-Za-z0-9-]+$/.test(d))
        .map((r) => ({ r, t: statSync(path.join(this.dir, r)).mtimeMs }))
        .sort((a, b) => b.t - a.t);
    } catch {
      return 0; // no artifacts directory yet (or it vanished meanwhile): nothing to prune
    }
    const cutoff = days === undefined ? -Infinity : now - days * DAY_MS;
    let removed = 0;
    runs.forEach(({ r, t }, i) => {
      if ((count !== undefined && i >= count) || t < cutoff) {
        try {
          rmSync(path.join(this.dir, r), { recursive: true, force: true });
          removed++;
        } catch {
          /* retried on the next prune */
        }
      }
    });
    return removed;
  }

  write(runId: string, owner: string, items: { name: string; content: string }[]): ArtifactRef[] {
    if (!items.length) return [];
    const runDir = path.join(this.dir, runId);
    mkdirSync(runDir, { recursive: true });
    // The owner goes first: an artifact is never on disk without the session it belongs to.
    writeFileSync(path.join(runDir, OWNER_FILE), owner);
    const refs = items.map(({ name, content }) => {
      const file = artifactFileName(name);
      writeFileSync(path.join(runDir, file), content);
      return { name, uri: artifactUri(runId, file), bytes: Buffer.byteLength(content) };
    });
    this.prune();
    return refs;
  }

  /** The artifacts of `owner`'s runs, newest runs first (for resources/list). */
  list(owner: string, limit = 500): ArtifactRef[] {
    let runs: string[];
    try {
      runs = readdirSync(this.dir).filter((d) => RUN_DIR.test(d) && this.ownedBy(d, owner, 'list'));
    } catch {
      return [];
    }
    const withTime = runs.map((r) => ({ r, t: statSync(path.join(this.dir, r)).mtimeMs })).sort((a, b) => b.t - a.t);
    const out: ArtifactRef[] = [];
    for (const { r } of withTime) {
      for (const f of readdirSync(path.join(this.dir, r))) {
        if (f === OWNER_FILE) continue;
        out.push({ name: f, uri: artifactUri(r, f), bytes: statSync(path.join(this.dir, r, f)).size });
        if (out.length >= limit) return out;
      }
    }
    return out;
  }

  /**
   * Reads one artifact of `owner`'s run; the run id and name are checked so a URI can never leave the
   * artifacts dir. Another session's artifact reads as missing, exactly like one that does not exist.
   */
  read(runId: string, name: string, owner: string): string | undefined {
    if (!RUN_DIR.test(runId) || artifactFileName(name) !== name || !this.ownedBy(runId, owner, 'read')) return undefined;
    try {
      return readFileSync(path.join(this.dir, runId, name), 'utf8');
    } catch {
      return undefined;
    }
  }

  /**
   * Listing shows the owner's own runs only. Reading follows the runs' rule (mayAccess): a session-less
   * client that holds a run id (the capability) may read that run's artifacts, but never lists others'.
   * Run dirs written before owners were recorded have no owner file: nobody sees them.
   */
  private ownedBy(runId: string, owner: string, use: 'list' | 'read'): boolean {
    let recorded: string;
    try {
      recorded = readFileSync(path.join(this.dir, runId, OWNER_FILE), 'utf8');
    } catch {
      return false;
    }
    return use === 'list' ? recorded === owner : mayAccess(recorded, owner);
  }
}

export function artifactUri(runId: string, file: string): string {
  return `artifact://${runId}/${encodeURIComponent(file)}`;
}
