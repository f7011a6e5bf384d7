import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createFsTools, FS_LIMITS, fsTools, type FsLimits } from '../src/tools/fs-tools.js';
import { compilePathGlob } from '../src/glob.js';
import { isWithin, resolveInWorkspace } from '../src/workspace/workspace-path.js';
import type { ToolContext } from '../src/tools/types.js';
import type { ToolOutcome } from '../src/contract/tool.js';

// Layout (base is a realpath'd temp dir):
//   base/ws                 the workspace
//   base/ws-evil/secret.txt prefix sibling (CVE-2025-53110)
//   base/outside/secret.txt outside target for symlinks (CVE-2025-53109)
let base: string;
let ws: string;
let ctx: ToolContext;

// Caps are given to the tools when they are made: tests that lower one change this copy, and every
// call makes its tools from it.
const limits: FsLimits = { ...FS_LIMITS };
const call = (tool: string, args: unknown, c: ToolContext = ctx): Promise<ToolOutcome> =>
  createFsTools(limits)[tool].run(args as Record<string, unknown>, c);

/** search_files' glob is the rules' glob (src/glob.ts). */
const globToRegExp = (glob: string): RegExp => {
  const g = compilePathGlob(glob);
  if (!g.ok) throw new Error(g.error);
  return g.glob.re;
};

function write(rel: string, content: string | Buffer): void {
  const abs = path.join(ws, rel);
  fs.mkdirSync(path.dirname(abs), { recursive: true });
  fs.writeFileSync(abs, content);
}

before(() => {
  base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'delegate-fs-')));
  ws = path.join(base, 'ws');
  fs.mkdirSync(ws);
  fs.mkdirSync(path.join(base, 'ws-evil'));
  fs.writeFileSync(path.join(base, 'ws-evil', 'secret.txt'), 'EVIL SECRET needle\n');
  fs.mkdirSync(path.join(base, 'outside'));
  fs.writeFileSync(path.join(base, 'outside', 'secret.txt'), 'OUTSIDE SECRET needle\n');

  write('hello.txt', 'line1\nline2\nline3\nline4\nline5\n');
  write('src/a.ts', 'export const needle = 1;\nconst other = 2;\n');
  write('src/deep/b.js', 'function needle() {}\n');
  write('docs/readme.md', 'no match here\nNEEDLE uppercase\n');
  write('bin.dat', Buffer.from([0x41, 0x00, 0x42, 0x0a]));
  write('node_modules/pkg/index.js', 'needle in node_modules\n');
  write('.git/config', 'needle in git\n');
  write('crlf.txt', 'one\r\ntwo\r\nthree\r\n');
  fs.writeFileSync(path.join(ws, 'empty.txt'), '');

  // Symlinks: outside (file + directory), inside (file + directory), dangling outside / inside.
  fs.symlinkSync(path.join(base, 'outside', 'secret.txt'), path.join(ws, 'out-file-link'));
  fs.symlinkSync(path.join(base, 'outside'), path.join(ws, 'out-dir-link'));
  fs.symlinkSync('hello.txt', path.join(ws, 'in-file-link'));
  fs.symlinkSync('src', path.join(ws, 'in-dir-link'));
  fs.symlinkSync(path.join(base, 'outside', 'not-yet.txt'), path.join(ws, 'dangling-out'));
  fs.symlinkSync('not-yet-inside.txt', path.join(ws, 'dangling-in'));
  fs.symlinkSync('../ws-evil', path.join(ws, 'evil-rel-link'));

  ctx = { workspaceRoot: ws };
});

after(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

describe('resolveInWorkspace', () => {
  it('resolves relative paths against the root, not process.cwd()', async () => {
    const r = await resolveInWorkspace(ws, 'hello.txt');
    assert.deepEqual(r, { ok: true, abs: path.join(ws, 'hello.txt'), rel: 'hello.txt' });
    const dot = await resolveInWorkspace(ws, '.');
    assert.deepEqual(dot, { ok: true, abs: ws, rel: '.' });
    const norm = await resolveInWorkspace(ws, 'src/../src/./a.ts');
    assert.ok(norm.ok && norm.rel === 'src/a.ts');
  });

  it('accepts absolute paths inside the root', async () => {
    const r = await resolveInWorkspace(ws, path.join(ws, 'src', 'a.ts'));
    assert.ok(r.ok);
    assert.equal(r.rel, 'src/a.ts');
  });

  it('refuses absolute paths outside the root', async () => {
    const r = await resolveInWorkspace(ws, '/etc/passwd');
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.reason, `path "/etc/passwd" resolves outside the workspace (${ws})`);
  });

  it('refuses .. escapes', async () => {
    for (const p of ['../etc/passwd', '..', 'src/../../outside/secret.txt', '../outside/secret.txt']) {
      const r = await resolveInWorkspace(ws, p);
      assert.equal(r.ok, false, p);
      assert.equal(!r.ok && r.reason, `path ${JSON.stringify(p)} resolves outside the workspace (${ws})`);
    }
  });

  it('refuses a prefix sibling (/x/ws vs /x/ws-evil)', async () => {
    for (const p of [path.join(base, 'ws-evil', 'secret.txt'), '../ws-evil/secret.txt', path.join(base, 'ws-evil')]) {
      const r = await resolveInWorkspace(ws, p);
      assert.equal(r.ok, false, p);
      assert.match(!r.ok ? r.reason : '', /resolves outside the workspace/);
    }
    // …and via a symlink
    const viaLink = await resolveInWorkspace(ws, 'evil-rel-link/secret.txt');
    assert.equal(viaLink.ok, false);
    assert.match(!viaLink.ok ? viaLink.reason : '', /goes through a symlink that leads outside the workspace/);
    assert.equal(isWithin('/tmp/x/ws', '/tmp/x/ws-evil'), false);
    assert.equal(isWithin('/tmp/x/ws', '/tmp/x/ws/a'), true);
    assert.equal(isWithin('/tmp/x/ws', '/tmp/x/ws'), true);
    assert.equal(isWithin('/', '/etc'), true);
  });

  it('refuses symlinks leading outside (file and directory, existing or not)', async () => {
    for (const p of ['out-file-link', 'out-dir-link', 'out-dir-link/secret.txt', 'out-dir-link/new/deeper.txt', 'dangling-out']) {
      const r = await resolveInWorkspace(ws, p);
      assert.equal(r.ok, false, p);
      assert.equal(!r.ok && r.reason, `path ${JSON.stringify(p)} goes through a symlink that leads outside the workspace`);
    }
  });

  it('allows symlinks pointing inside', async () => {
    const f = await resolveInWorkspace(ws, 'in-file-link');
    assert.deepEqual(f, { ok: true, abs: path.join(ws, 'hello.txt'), rel: 'hello.txt' });
    const d = await resolveInWorkspace(ws, 'in-dir-link/deep/b.js');
    assert.ok(d.ok);
    assert.equal(d.rel, 'src/deep/b.js');
    const dangling = await resolveInWorkspace(ws, 'dangling-in');
    assert.ok(dangling.ok);
    assert.equal(dangling.rel, 'not-yet-inside.txt');
  });

  it('resolves non-existent paths through the nearest existing ancestor', async () => {
    const r = await resolveInWorkspace(ws, 'src/new/dir/file.txt');
    assert.deepEqual(r, { ok: true, abs: path.join(ws, 'src/new/dir/file.txt'), rel: 'src/new/dir/file.txt' });
  });

  it('refuses NUL bytes and empty paths', async () => {
    const nul = await resolveInWorkspace(ws, 'hello.txt\0.png');
    assert.equal(nul.ok, false);
    assert.match(!nul.ok ? nul.reason : '', /NUL byte/);
    const empty = await resolveInWorkspace(ws, '');
    assert.equal(empty.ok, false);
    assert.equal(!empty.ok && empty.reason, 'path is empty');
  });

  it('reports a machine-readable kind; symlink loops are refused, not followed forever', async () => {
    const kind = async (p: string, forWrite = false) => {
      const r = await resolveInWorkspace(ws, p, { forWrite });
      return r.ok ? 'ok' : r.kind;
    };
    assert.equal(await kind('../x'), 'outside');
    assert.equal(await kind('out-dir-link/x'), 'symlink_outside');
    assert.equal(await kind('a\0b'), 'invalid');
    assert.equal(await kind('in-file-link', true), 'write_symlink');
    fs.mkdirSync(path.join(ws, 'loops'));
    fs.symlinkSync('b', path.join(ws, 'loops', 'a'));
    fs.symlinkSync('a', path.join(ws, 'loops', 'b'));
    try {
      for (const p of ['loops/a', 'loops/a/x']) {
        const r = await resolveInWorkspace(ws, p, { forWrite: true });
        assert.equal(r.ok, false);
        assert.equal(!r.ok && r.kind, 'unresolvable');
        assert.match(!r.ok ? r.reason : '', /too many levels of symbolic links/);
      }
      const s = await call('search_files', { pattern: 'x', path: 'loops' });
      assert.match(s.content, /\[skipped: 2 symlinks that cannot be resolved/);
      const l = await call('list_dir', { path: 'loops' });
      assert.equal(l.content, 'loops/a -> (unresolvable symlink, e.g. a loop; not followed)\nloops/b -> (unresolvable symlink, e.g. a loop; not followed)');
    } finally {
      fs.rmSync(path.join(ws, 'loops'), { recursive: true });
    }
  });

  it('forWrite: refuses a final-component symlink (even one pointing inside)', async () => {
    for (const p of ['in-file-link', 'dangling-in']) {
      const r = await resolveInWorkspace(ws, p, { forWrite: true });
      assert.equal(r.ok, false, p);
      assert.match(!r.ok ? r.reason : '', /is a symlink; refusing to write through it/);
    }
    const dOut = await resolveInWorkspace(ws, 'dangling-out', { forWrite: true });
    assert.equal(dOut.ok, false);
  });

  it('forWrite: refuses a path through a symlinked parent leading outside; allows plain new files', async () => {
    const r = await resolveInWorkspace(ws, 'out-dir-link/new.txt', { forWrite: true });
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.reason : '', /goes through a symlink that leads outside the workspace/);
    const okNew = await resolveInWorkspace(ws, 'src/new-file.ts', { forWrite: true });
    assert.ok(okNew.ok);
    const okExisting = await resolveInWorkspace(ws, 'hello.txt', { forWrite: true });
    assert.ok(okExisting.ok);
    const viaInsideLink = await resolveInWorkspace(ws, 'in-dir-link/new.ts', { forWrite: true });
    assert.ok(viaInsideLink.ok);
    assert.equal(viaInsideLink.rel, 'src/new.ts');
  });
});

describe('read_file', () => {
  it('reads a whole file', async () => {
    const r = await call('read_file', { path: 'hello.txt' });
    assert.deepEqual(r, { isError: false, content: 'line1\nline2\nline3\nline4\nline5\n' });
  });

  it('reads 1-based inclusive line ranges', async () => {
    assert.equal((await call('read_file', { path: 'hello.txt', start_line: 2, end_line: 3 })).content, 'line2\nline3\n');
    assert.equal((await call('read_file', { path: 'hello.txt', start_line: 4 })).content, 'line4\nline5\n');
    assert.equal((await call('read_file', { path: 'hello.txt', end_line: 1 })).content, 'line1\n');
    assert.equal((await call('read_file', { path: 'hello.txt', start_line: 5, end_line: 99 })).content, 'line5\n');
    assert.equal((await call('read_file', { path: 'crlf.txt', start_line: 2, end_line: 2 })).content, 'two\r\n');
    const past = await call('read_file', { path: 'hello.txt', start_line: 6 });
    assert.equal(past.isError, true);
    assert.match(past.content, /start_line 6 is past the end of "hello.txt" \(5 lines\)/);
  });

  it('truncates large files with a note', async () => {
    const old = limits.readMaxBytes;
    limits.readMaxBytes = 100;
    try {
      const lines = Array.from({ length: 50 }, (_, i) => `row ${String(i + 1).padStart(3, '0')}`); // 7 bytes + \n
      write('big.txt', `${lines.join('\n')}\n`);
      const size = fs.statSync(path.join(ws, 'big.txt')).size;
      const r = await call('read_file', { path: 'big.txt' });
      assert.equal(r.isError, false);
      assert.ok(r.content.startsWith('row 001\nrow 002\n'));
      assert.ok(r.content.endsWith(`\n[truncated: file is ${size} bytes; use start_line/end_line]`), r.content);
      const body = r.content.slice(0, r.content.lastIndexOf('[truncated'));
      assert.ok(Buffer.byteLength(body) <= 100);
      assert.ok(body.endsWith('row 012\n'), body); // cut at a whole line (12 * 8 = 96 bytes)
      // A range is capped too, with a note pointing at the last line shown.
      const rr = await call('read_file', { path: 'big.txt', start_line: 20, end_line: 50 });
      assert.ok(rr.content.startsWith('row 020\n'));
      assert.match(rr.content, /\[truncated: output limit of 100 bytes reached after line 31; use start_line\/end_line\]$/);
      // A single line longer than the cap is cut on a UTF-8 boundary.
      write('oneline.txt', 'é'.repeat(200));
      const one = await call('read_file', { path: 'oneline.txt' });
      assert.ok(one.content.startsWith('éé'));
      assert.ok(!one.content.includes('\uFFFD'));
    } finally {
      limits.readMaxBytes = old;
    }
  });

  it('reads an empty file', async () => {
    assert.deepEqual(await call('read_file', { path: 'empty.txt' }), { isError: false, content: '[empty file]' });
  });

  it('rejects binary files and directories', async () => {
    const b = await call('read_file', { path: 'bin.dat' });
    assert.equal(b.isError, true);
    assert.match(b.content, /^read_file: "bin.dat" appears to be a binary file/);
    const d = await call('read_file', { path: 'src' });
    assert.equal(d.isError, true);
    assert.match(d.content, /is a directory; use list_dir/);
  });

  it('gives a clean not-found error', async () => {
    const r = await call('read_file', { path: 'nope/missing.txt' });
    assert.deepEqual(r, { isError: true, content: 'read_file: file "nope/missing.txt" not found in the workspace' });
    const dangling = await call('read_file', { path: 'dangling-in' });
    assert.equal(dangling.isError, true);
    assert.match(dangling.content, /not found/);
  });

  it('refuses escapes: absolute outside, .., prefix sibling, outside symlinks, NUL', async () => {
    const cases: [unknown, RegExp][] = [
      ['/etc/passwd', /resolves outside the workspace/],
      [path.join(base, 'outside', 'secret.txt'), /resolves outside the workspace/],
      ['../outside/secret.txt', /resolves outside the workspace/],
      [path.join(base, 'ws-evil', 'secret.txt'), /resolves outside the workspace/],
      ['../ws-evil/secret.txt', /resolves outside the workspace/],
      ['out-file-link', /goes through a symlink that leads outside the workspace/],
      ['out-dir-link/secret.txt', /goes through a symlink that leads outside the workspace/],
      ['hello.txt\0', /NUL byte/],
    ];
    for (const [p, re] of cases) {
      const r = await call('read_file', { path: p });
      assert.equal(r.isError, true, String(p));
      assert.match(r.content, /^read_file: /);
      assert.match(r.content, re);
      assert.doesNotMatch(r.content, /SECRET/);
    }
  });

  it('follows a symlink that stays inside', async () => {
    const r = await call('read_file', { path: 'in-file-link' });
    assert.equal(r.isError, false);
    assert.match(r.content, /^line1/);
    const d = await call('read_file', { path: 'in-dir-link/a.ts' });
    assert.match(d.content, /export const needle/);
  });

  it('validates arguments', async () => {
    const cases: [unknown, string][] = [
      [{}, 'read_file: missing required argument "path" (a string)'],
      [{ path: 42 }, 'read_file: "path" must be a string, got number'],
      [{ path: 'hello.txt', start_line: 1.5 }, 'read_file: "start_line" must be an integer, got 1.5'],
      [{ path: 'hello.txt', start_line: '2' }, 'read_file: "start_line" must be an integer, got string'],
      [{ path: 'hello.txt', end_line: 0 }, 'read_file: "end_line" must be >= 1 (lines are numbered from 1), got 0'],
      [{ path: 'hello.txt', start_line: 3, end_line: 2 }, 'read_file: "end_line" (2) must be >= "start_line" (3)'],
      [{ path: 'hello.txt', file: 'x' }, 'read_file: unknown argument "file" (expected: path, start_line, end_line)'],
      [null, 'read_file: arguments must be a JSON object, got null'],
      [{ path: '' }, 'read_file: path is empty'],
    ];
    for (const [args, msg] of cases) {
      assert.deepEqual(await call('read_file', args), { isError: true, content: msg }, JSON.stringify(args));
    }
    // null optional arguments count as absent
    const r = await call('read_file', { path: 'hello.txt', start_line: null, end_line: 1 });
    assert.deepEqual(r, { isError: false, content: 'line1\n' });
  });
});

describe('list_dir', () => {
  it('lists one level only, sorted, dirs with /, sizes for files, symlink markers', async () => {
    const r = await call('list_dir', {});
    assert.equal(r.isError, false);
    const lines = r.content.split('\n');
    assert.ok(lines.includes('hello.txt (30 bytes)'), r.content);
    assert.ok(lines.includes('src/'));
    assert.ok(lines.includes('.git/'));
    assert.ok(lines.includes('node_modules/'));
    // not recursive: nothing below the listed directory
    assert.ok(!r.content.includes('src/a.ts'));
    assert.ok(!r.content.includes('src/deep'));
    assert.ok(!r.content.includes('node_modules/pkg'));
    assert.ok(!r.content.includes('.git/config'));
    assert.ok(!r.content.includes('['), 'no notes on a small listing');
    // symlinks: inside ones show their target, outside ones are not followed and do not leak
    assert.ok(lines.includes('in-file-link -> hello.txt (symlink, 30 bytes)'));
    assert.ok(lines.includes('in-dir-link/ -> src (symlink to a directory)'));
    assert.ok(lines.includes('out-dir-link -> (symlink leading outside the workspace; not followed)'));
    assert.ok(lines.includes('out-file-link -> (symlink leading outside the workspace; not followed)'));
    assert.ok(lines.includes('dangling-in -> not-yet-inside.txt (broken symlink)'));
    assert.ok(!r.content.includes('secret'));
    assert.ok(!r.content.includes(base));
    // every line is a direct entry of the root
    for (const l of lines) assert.doesNotMatch(l.split(' ')[0], /\/./, l);
    // sorted
    const keys = lines.map((l) => l.split(' ')[0]);
    assert.deepEqual(keys, [...keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
  });

  it('lists a subdirectory with paths relative to the workspace root', async () => {
    const r = await call('list_dir', { path: 'src' });
    assert.deepEqual(r.content.split('\n'), ['src/a.ts (42 bytes)', 'src/deep/']);
    const deep = await call('list_dir', { path: 'src/deep' });
    assert.equal(deep.content, 'src/deep/b.js (21 bytes)');
    const viaLink = await call('list_dir', { path: 'in-dir-link/deep' });
    assert.equal(viaLink.content, 'src/deep/b.js (21 bytes)');
    const git = await call('list_dir', { path: '.git' });
    assert.equal(git.content, '.git/config (14 bytes)');
    const nm = await call('list_dir', { path: 'node_modules' });
    assert.equal(nm.content, 'node_modules/pkg/');
  });

  it('caps the number of entries with a note', async () => {
    for (let i = 0; i < 30; i++) write(`many/f${String(i).padStart(2, '0')}.txt`, 'x');
    const old = limits.listMaxEntries;
    limits.listMaxEntries = 10;
    try {
      const r = await call('list_dir', { path: 'many' });
      const lines = r.content.split('\n');
      assert.equal(lines.length, 11);
      assert.equal(lines[0], 'many/f00.txt (1 bytes)');
      assert.equal(lines[9], 'many/f09.txt (1 bytes)');
      assert.match(lines[10], /^\[listing truncated at 10 entries \(of 30, sorted by name\)/);
    } finally {
      limits.listMaxEntries = old;
    }
  });

  it('errors: outside, not found, a file, bad args', async () => {
    assert.match((await call('list_dir', { path: '..' })).content, /^list_dir: path "\.\." resolves outside the workspace/);
    assert.match((await call('list_dir', { path: 'out-dir-link' })).content, /goes through a symlink that leads outside/);
    assert.match((await call('list_dir', { path: path.join(base, 'ws-evil') })).content, /resolves outside/);
    assert.deepEqual(await call('list_dir', { path: 'nope' }), {
      isError: true,
      content: 'list_dir: directory "nope" not found in the workspace',
    });
    const f = await call('list_dir', { path: 'hello.txt' });
    assert.equal(f.isError, true);
    assert.match(f.content, /is not a directory; use read_file/);
    assert.deepEqual(await call('list_dir', { path: 1 }), { isError: true, content: 'list_dir: "path" must be a string, got number' });
  });

  it('reports an empty directory', async () => {
    fs.mkdirSync(path.join(ws, 'emptydir'));
    assert.deepEqual(await call('list_dir', { path: 'emptydir' }), { isError: false, content: '(empty directory: emptydir/)' });
  });
});

describe('search_files', () => {
  it('finds matches as rel/path:line: text, skipping .git, node_modules, binaries and outside symlinks', async () => {
    const r = await call('search_files', { pattern: 'needle' });
    assert.equal(r.isError, false);
    const lines = r.content.split('\n');
    assert.ok(lines.includes('src/a.ts:1: export const needle = 1;'), r.content);
    assert.ok(lines.includes('src/deep/b.js:1: function needle() {}'));
    assert.ok(!r.content.includes('node_modules'));
    assert.ok(!r.content.includes('in git'));
    assert.ok(!r.content.includes('SECRET'), 'must not follow symlinks leading outside');
    assert.match(r.content, /\[skipped: .*4 symlinks leading outside the workspace/);
    assert.match(r.content, /1 symlinked directory \(not followed\)/);
    assert.match(r.content, /1 binary file/);
  });

  it('takes its glob in the permission rules\' syntax (src/glob.ts)', async () => {
    write('globsyntax/a*.txt', 'needle star\n');
    write('globsyntax/ab.txt', 'needle plain\n');
    write('globsyntax/notes', 'needle in a file named notes\n');
    write('globsyntax/a/b.txt', 'needle below a/\n');
    try {
      // `\*` is a literal star, not a wildcard (the old search_files glob dropped the backslash).
      const star = await call('search_files', { pattern: 'needle', path: 'globsyntax', glob: 'a\\*.txt' });
      assert.equal(star.isError, false, star.content);
      assert.equal(star.content, 'globsyntax/a*.txt:1: needle star');
      // `x/**` covers `x` itself, as `Read(x/**)` does.
      const self = await call('search_files', { pattern: 'needle', path: 'globsyntax', glob: 'notes/**' });
      assert.equal(self.isError, false, self.content);
      assert.equal(self.content, 'globsyntax/notes:1: needle in a file named notes');
      // A class never matches the separator: `[/]` is refused with the rules' message, and matches nothing.
      const slash = await call('search_files', { pattern: 'needle', path: 'globsyntax', glob: 'a[/]b.txt' });
      assert.equal(slash.isError, true);
      assert.equal(slash.content, 'search_files: invalid glob "a[/]b.txt": unterminated "[" (escape it as \\[ for a literal bracket)');
      // An absolute glob is matched against the real absolute path, as in a rule.
      const abs = await call('search_files', { pattern: 'needle', path: 'globsyntax', glob: `${ws}/globsyntax/a/*.txt` });
      assert.equal(abs.isError, false, abs.content);
      assert.equal(abs.content, 'globsyntax/a/b.txt:1: needle below a/');
      const cls = await call('search_files', { pattern: 'needle', path: 'globsyntax', glob: 'a[!x]b.txt' });
      assert.equal(cls.isError, false, cls.content);
      assert.match(cls.content, /^No matches for \/needle\/ in "globsyntax"/);
    } finally {
      fs.rmSync(path.join(ws, 'globsyntax'), { recursive: true });
    }
  });

  it('supports path, glob and (?i)', async () => {
    const sub = await call('search_files', { pattern: 'needle', path: 'src/deep' });
    assert.equal(sub.content, 'src/deep/b.js:1: function needle() {}');
    const g = await call('search_files', { pattern: 'needle', glob: '*.ts' });
    assert.equal(g.content, 'src/a.ts:1: export const needle = 1;');
    const g2 = await call('search_files', { pattern: 'needle', glob: 'src/**/*.{js,ts}' });
    assert.equal(g2.content, 'src/a.ts:1: export const needle = 1;\nsrc/deep/b.js:1: function needle() {}');
    const g3 = await call('search_files', { pattern: 'needle', path: 'src', glob: 'deep/*.js' });
    assert.equal(g3.content, 'src/deep/b.js:1: function needle() {}');
    const ci = await call('search_files', { pattern: '(?i)^needle', path: 'docs' });
    assert.equal(ci.content, 'docs/readme.md:2: NEEDLE uppercase');
    const file = await call('search_files', { pattern: 'line[24]', path: 'hello.txt' });
    assert.equal(file.content, 'hello.txt:2: line2\nhello.txt:4: line4');
    const link = await call('search_files', { pattern: 'line3', path: '.', glob: 'in-file-link' });
    assert.equal(link.content, 'in-file-link:3: line3');
  });

  it('reports no matches', async () => {
    const r = await call('search_files', { pattern: 'zzz-no-such-thing', path: 'src' });
    assert.deepEqual(r, { isError: false, content: 'No matches for /zzz-no-such-thing/ in "src"; 2 files searched.' });
  });

  it('caps matches and trims long lines', async () => {
    write('caps/long.txt', `${'a'.repeat(1000)}\n`);
    write('caps/many.txt', Array.from({ length: 10 }, (_, i) => `hit ${i}`).join('\n'));
    const old = limits.searchMaxMatches;
    limits.searchMaxMatches = 5;
    try {
      const long = await call('search_files', { pattern: 'a+', path: 'caps/long.txt' });
      assert.equal(long.content, `caps/long.txt:1: ${'a'.repeat(300)}…`);
      const many = await call('search_files', { pattern: '^hit', path: 'caps' });
      const lines = many.content.split('\n');
      assert.equal(lines.length, 6);
      assert.equal(lines[4], 'caps/many.txt:5: hit 4');
      assert.match(lines[5], /^\[stopped after 5 matches/);
    } finally {
      limits.searchMaxMatches = old;
    }
  });

  it('skips files over the size cap and bounds the number of entries visited', async () => {
    const oldSize = limits.searchMaxFileBytes;
    const oldFiles = limits.searchMaxFiles;
    try {
      limits.searchMaxFileBytes = 10;
      const r = await call('search_files', { pattern: 'needle', path: 'src' });
      assert.match(r.content, /^No matches/);
      assert.match(r.content, /\[skipped: 2 files larger than 10 bytes\]/);
      limits.searchMaxFileBytes = oldSize;
      limits.searchMaxFiles = 3;
      const v = await call('search_files', { pattern: 'x', path: 'many' });
      assert.match(v.content, /\[stopped after visiting 3 entries/);
      assert.equal(v.content.split('\n').filter((l) => l.startsWith('many/')).length, 3);
    } finally {
      limits.searchMaxFileBytes = oldSize;
      limits.searchMaxFiles = oldFiles;
    }
  });

  it('honours an aborted signal', async () => {
    const ac = new AbortController();
    ac.abort();
    const r = await call('search_files', { pattern: 'needle' }, { workspaceRoot: ws, signal: ac.signal });
    assert.deepEqual(r, { isError: true, content: 'search_files: aborted' });
  });

  it('RE2 syntax: backreferences and lookaround are refused by name; (?i) and classes work', async () => {
    const cases: [string, RegExp][] = [
      ['(a)\\1', /backreferences \(\\1 … \\9\) are not supported: patterns use RE2 syntax/],
      ['(?<x>a)\\k<x>', /named backreferences/],
      ['foo(?=bar)', /lookahead/],
      ['foo(?!bar)', /lookahead/],
      ['(?<=foo)bar', /lookbehind/],
      ['(?<!foo)bar', /lookbehind/],
    ];
    for (const [pattern, why] of cases) {
      const r = await call('search_files', { pattern });
      assert.equal(r.isError, true, pattern);
      assert.match(r.content, why, pattern);
    }
    assert.equal(cases.length, 6);
    // Escaped or in a class, the same characters are literals, not the refused constructs.
    const lit = await call('search_files', { pattern: '[(?=]\\(\\?=' });
    assert.equal(lit.isError, false, lit.content);
    const ci = await call('search_files', { pattern: '(?i)NEEDLE' });
    assert.equal(ci.isError, false, ci.content);
    assert.match(ci.content, /needle/);
  });

  it('a catastrophic pattern answers fast (linear time), and a costly one stops at the deadline with its note', async () => {
    fs.writeFileSync(path.join(ws, 'redos.txt'), 'a'.repeat(40) + 'b\n');
    const started = Date.now();
    const r = await call('search_files', { pattern: '^(a+)+$', path: 'redos.txt' });
    assert.equal(r.isError, false, r.content);
    assert.match(r.content, /^No matches/);
    assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
    const saved = limits.searchDeadlineMs;
    limits.searchDeadlineMs = 1500;
    try {
      fs.writeFileSync(path.join(ws, 'long.txt'), 'ab'.repeat(400_000));
      const slow = await call('search_files', { pattern: '(a|b){1,1000}c', path: 'long.txt' });
      assert.equal(slow.isError, false, slow.content);
      assert.match(slow.content, /stopped after 1.5 s: the pattern is too costly/);
    } finally {
      limits.searchDeadlineMs = saved;
      fs.rmSync(path.join(ws, 'long.txt'));
      fs.rmSync(path.join(ws, 'redos.txt'));
    }
  });

  it('errors: invalid regex, bad glob, outside paths, bad args', async () => {
    const bad = await call('search_files', { pattern: '(unclosed' });
    assert.equal(bad.isError, true);
    assert.equal(bad.content, 'search_files: invalid regular expression "(unclosed": missing ): (unclosed');
    const badGlob = await call('search_files', { pattern: 'x', glob: '{a,b' });
    assert.match(badGlob.content, /^search_files: invalid glob "\{a,b": unbalanced/);
    for (const p of ['..', 'out-dir-link', path.join(base, 'ws-evil'), '/etc']) {
      const r = await call('search_files', { pattern: 'needle', path: p });
      assert.equal(r.isError, true, p);
      assert.doesNotMatch(r.content, /SECRET/);
    }
    assert.deepEqual(await call('search_files', { path: '.' }), {
      isError: true,
      content: 'search_files: missing required argument "pattern" (a string)',
    });
    assert.deepEqual(await call('search_files', { pattern: '' }), { isError: true, content: 'search_files: "pattern" must not be empty' });
    assert.deepEqual(await call('search_files', { pattern: 'x', path: 'nope' }), {
      isError: true,
      content: 'search_files: path "nope" not found in the workspace',
    });
  });
});

describe('specs', () => {
  it('every tool has a well-formed spec keyed by its name', () => {
    for (const [name, tool] of Object.entries(fsTools)) {
      assert.equal(tool.spec.name, name);
      assert.ok(tool.spec.description.length > 40);
      const s = tool.spec.inputSchema as Record<string, unknown>;
      assert.equal(s.type, 'object');
      assert.equal(typeof s.properties, 'object');
      assert.ok(Array.isArray(s.required));
      assert.equal(s.additionalProperties, false);
    }
    assert.deepEqual(Object.keys(fsTools).sort(), ['list_dir', 'read_file', 'search_files']);
    assert.deepEqual((fsTools.read_file.spec.inputSchema as { required: string[] }).required, ['path']);
    assert.deepEqual((fsTools.search_files.spec.inputSchema as { required: string[] }).required, ['pattern']);
  });

  it('globToRegExp', () => {
    assert.ok(globToRegExp('*.ts').test('a.ts'));
    assert.ok(!globToRegExp('*.ts').test('a/b.ts'));
    assert.ok(globToRegExp('**/*.ts').test('b.ts'));
    assert.ok(globToRegExp('**/*.ts').test('a/b/c.ts'));
    assert.ok(globToRegExp('src/**').test('src/a/b'));
    assert.ok(globToRegExp('f?.[jt]s').test('f1.js'));
    assert.ok(!globToRegExp('[!a]*').test('abc'));
    assert.ok(globToRegExp('a.{js,ts}').test('a.ts'));
    assert.ok(!globToRegExp('a.js').test('aXjs'));
  });
});
