// Artifacts retention (delegate.artifacts.keep): the newest `count` runs' artifacts, none older than
// `days`, pruned when the store opens (server start) and after each run that writes artifacts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ArtifactStore } from '../src/orchestrator/artifacts.js';
import { DelegateConfigSchema } from '../src/config/config.js';
import { tempDir } from './helpers.js';

function makeRuns(dir: string, ages: number[]): string[] {
  const now = Date.now() / 1000;
  return ages.map((ageDays, i) => {
    const id = `run_0000000${i}-aaaa-bbbb-cccc-dddddddddddd`;
    mkdirSync(path.join(dir, id), { recursive: true });
    writeFileSync(path.join(dir, id, 'review.md'), `run ${i}`);
    utimesSync(path.join(dir, id), now - ageDays * 86400, now - ageDays * 86400);
    return id;
  });
}

describe('artifacts retention', () => {
  it('defaults: 200 runs, 30 days', () => {
    assert.deepEqual(DelegateConfigSchema.parse({}).artifacts.keep, { count: 200, days: 30 });
  });

  it('keeps the newest `count` runs and drops those older than `days`', () => {
    const dir = tempDir('dmcp-art-');
    const ids = makeRuns(dir, [0.1, 1, 2, 3, 40]);
    assert.equal(new ArtifactStore(dir, { days: 30 }).prune(), 1);
    assert.deepEqual(readdirSync(dir).sort(), ids.slice(0, 4).sort());
    assert.equal(new ArtifactStore(dir, { count: 2 }).prune(), 2);
    assert.deepEqual(readdirSync(dir).sort(), ids.slice(0, 2).sort());
    assert.equal(new ArtifactStore(dir, {}).prune(), 0, 'no limits: nothing is removed');
    assert.equal(new ArtifactStore(path.join(dir, 'missing'), { count: 1 }).prune(), 0);
  });

  it('a run that writes artifacts prunes the older ones', () => {
    const dir = tempDir('dmcp-art2-');
    makeRuns(dir, [1, 2, 3]);
    const store = new ArtifactStore(dir, { count: 2 });
    const refs = store.write('run_ffffffff-aaaa-bbbb-cccc-dddddddddddd', 'stdio', [{ name: 'review.md', content: 'new' }]);
    assert.equal(refs.length, 1);
    assert.equal(readdirSync(dir).length, 2);
    assert.ok(existsSync(path.join(dir, 'run_ffffffff-aaaa-bbbb-cccc-dddddddddddd', 'review.md')));
    assert.ok(existsSync(path.join(dir, 'run_00000000-aaaa-bbbb-cccc-dddddddddddd')), 'the newest older run stays');
  });
});
