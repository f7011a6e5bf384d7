// The permission checkpoint (src/permissions): paths against a real temp workspace with symlinks,
// argv commands, URLs, seed translation, intersection, toolOffered and rule parsing.
// Every denial also asserts that its reason names the rule or the cause.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import type { AgentDefinition } from '../src/agents/definition.js';
import {
  checkAgent,
  checkCommand,
  checkMcpTool,
  checkResolvedAddress,
  checkResolvedPath,
  checkToolCall,
  checkUrl,
  intersect,
  isPrivateAddress,
  parseRule,
  rulesForAgent,
  toolOffered,
  translateSeedTools,
  validateRules,
  type Decision,
  type RuleLayer,
  type RuleSet,
} from '../src/permissions/index.js';

// Layout (base is a realpath'd temp dir):
//   base/ws                    the workspace
//   base/ws-evil/secret.txt    prefix sibling (CVE-2025-53110)
//   base/outside/secret.txt    outside target for symlinks (CVE-2025-53109)
let base: string;
let ws: string;

function write(rel: string, content = 'x\n'): void {
  const abs = path.join(ws, rel);
  fs.mkdirSync(path.dirname(abs), { recursive: true });
  fs.writeFileSync(abs, content);
}

before(() => {
  base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'delegate-perm-')));
  ws = path.join(base, 'ws');
  fs.mkdirSync(ws);
  fs.mkdirSync(path.join(base, 'ws-evil'));
  fs.writeFileSync(path.join(base, 'ws-evil', 'secret.txt'), 'evil\n');
  fs.mkdirSync(path.join(base, 'outside'));
  fs.writeFileSync(path.join(base, 'outside', 'secret.txt'), 'outside\n');

  for (const f of ['src/a.ts', 'src/deep/b.ts', 'src/.env.local', '.env', 'config/real-env', 'secrets/key.pem',
    'package.json', 'docs/readme.md', 'README.md', 'locked/old.txt']) write(f);
  fs.mkdirSync(path.join(ws, 'public'));

  fs.symlinkSync(path.join(base, 'outside', 'secret.txt'), path.join(ws, 'src', 'out-file')); // file out
  fs.symlinkSync(path.join(base, 'outside'), path.join(ws, 'src', 'out-dir')); // dir out
  fs.symlinkSync('../../ws-evil', path.join(ws, 'src', 'evil')); // to the prefix sibling
  fs.symlinkSync(path.join(base, 'outside'), path.join(ws, 'linked-parent')); // parent of a write
  fs.symlinkSync('../.env', path.join(ws, 'src', 'env-link')); // allowed dir → denied file
  fs.symlinkSync('../docs/readme.md', path.join(ws, 'src', 'inner-link')); // allowed dir → other dir
  fs.symlinkSync('../config/real-env', path.join(ws, 'public', '.env')); // a symlinked .env
});

after(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

const layer = (l: Partial<RuleLayer>): RuleSet => ({ layers: [{ deny: [], ask: [], allow: [], ...l }] });

const MAIN = layer({
  deny: ['Read(**/.env*)', 'Bash(git push:*)', 'Read(./secrets)', 'Edit(./locked/**)'],
  ask: ['Edit(./package.json)'],
  allow: [
    'Read(./src/**)', 'Read(./docs/**)', 'Read(./package.json)', 'Read(./public/**)', 'Read(./config/**)',
    'Read(./secrets/**)', 'Edit(./src/**)', 'Edit(./package.json)', 'Edit(./locked/**)',
    'Bash(npm test)', 'Bash(npm run test:*)', 'Bash(git:*)',
    'WebFetch(domain:api.github.com)', 'WebFetch(domain:*.example.com)',
    'mcp__github__get_*', 'Agent(test-gen)',
  ],
});

const call = (rs: RuleSet, tool: string, args: Record<string, unknown>): Promise<Decision> =>
  checkToolCall(rs, tool, args, { workspaceRoot: ws });

function allowed(d: Decision, rule?: string): void {
  assert.equal(d.decision, 'allow', d.reason);
  if (rule !== undefined) assert.equal(d.rule, rule);
}

/** A denial whose reason mentions `cause` (a rule or the refusal's cause); `rule` checks the rule field. */
function denied(d: Decision, cause: string | RegExp, rule: string | null = null): void {
  assert.equal(d.decision, 'deny', `expected deny, got ${d.decision}: ${d.reason}`);
  assert.equal(d.rule, rule, d.reason);
  if (typeof cause === 'string') assert.ok(d.reason.includes(cause), `reason ${JSON.stringify(d.reason)} lacks ${JSON.stringify(cause)}`);
  else assert.match(d.reason, cause);
}

describe('paths', () => {
  it('allows reads matching an allow rule, on the realpath', async () => {
    allowed(await call(MAIN, 'read_file', { path: 'src/a.ts' }), 'Read(./src/**)');
    allowed(await call(MAIN, 'read_file', { path: './src/../src/deep/b.ts' }), 'Read(./src/**)');
    allowed(await call(MAIN, 'read_file', { path: path.join(ws, 'src/a.ts') }), 'Read(./src/**)');
    allowed(await call(MAIN, 'list_dir', { path: 'src' }), 'Read(./src/**)'); // `dir/**` covers the dir itself
  });

  it('refuses a symlink that leads out (file and directory)', async () => {
    denied(await call(MAIN, 'read_file', { path: 'src/out-file' }), 'symlink that leads outside');
    denied(await call(MAIN, 'read_file', { path: 'src/out-dir/secret.txt' }), 'symlink that leads outside');
    denied(await call(MAIN, 'list_dir', { path: 'src/out-dir' }), 'symlink that leads outside');
    denied(await call(MAIN, 'search_files', { path: 'src/out-dir', pattern: 'x' }), 'symlink that leads outside');
  });

  it('refuses the prefix sibling ws-evil by every route', async () => {
    denied(await call(MAIN, 'read_file', { path: '../ws-evil/secret.txt' }), 'outside the workspace');
    denied(await call(MAIN, 'read_file', { path: `${ws}-evil/secret.txt` }), 'outside the workspace');
    denied(await call(MAIN, 'read_file', { path: 'src/evil/secret.txt' }), 'symlink that leads outside');
    // An absolute glob naming the workspace does not admit the sibling either.
    const abs = layer({ allow: [`Read(${ws}/**)`] });
    allowed(await call(abs, 'read_file', { path: 'src/a.ts' }), `Read(${ws}/**)`);
    denied(await call(abs, 'read_file', { path: `${ws}-evil/secret.txt` }), 'outside the workspace');
  });

  it('refuses .. escapes and absolute paths outside, before any rule', async () => {
    const anything = layer({ allow: ['Read', 'Edit'] });
    denied(await call(anything, 'read_file', { path: '../outside/secret.txt' }), 'outside the workspace');
    denied(await call(anything, 'read_file', { path: 'src/../../outside/secret.txt' }), 'outside the workspace');
    denied(await call(anything, 'read_file', { path: '/etc/passwd' }), 'outside the workspace');
    denied(await call(anything, 'write_file', { path: '/tmp/x.txt' }), 'outside the workspace');
  });

  it('refuses a write through a symlinked parent, and a write to a symlink', async () => {
    const anything = layer({ allow: ['Edit'] });
    denied(await call(anything, 'write_file', { path: 'linked-parent/new.txt' }), 'symlink that leads outside');
    denied(await call(anything, 'write_file', { path: 'linked-parent/sub/new.txt' }), 'symlink that leads outside');
    denied(await call(anything, 'edit_file', { path: 'src/inner-link' }), 'is a symlink');
  });

  it('allows a not-yet-existing file in an allowed dir, not in a denied or unlisted one', async () => {
    allowed(await call(MAIN, 'write_file', { path: 'src/new/deeper/file.ts' }), 'Edit(./src/**)');
    denied(await call(MAIN, 'write_file', { path: 'locked/new/file.txt' }), 'denied by rule "Edit(./locked/**)"', 'Edit(./locked/**)');
    denied(await call(MAIN, 'write_file', { path: 'docs/new.md' }), 'no allow rule matches Edit(docs/new.md)');
  });

  it('deny beats allow (also through a symlink, and on the name as requested)', async () => {
    denied(await call(MAIN, 'read_file', { path: 'src/.env.local' }), 'denied by rule "Read(**/.env*)"', 'Read(**/.env*)');
    denied(await call(MAIN, 'read_file', { path: 'src/env-link' }), 'Read(**/.env*)', 'Read(**/.env*)');
    // public/.env → config/real-env: the realpath is allowed, but the deny rule sees the name asked for.
    denied(await call(MAIN, 'read_file', { path: 'public/.env' }), 'Read(**/.env*)', 'Read(**/.env*)');
    allowed(await call(MAIN, 'read_file', { path: 'config/real-env' }), 'Read(./config/**)');
    // A denied directory covers everything below it, even with a more specific allow.
    denied(await call(MAIN, 'read_file', { path: 'secrets/key.pem' }), 'Read(./secrets)', 'Read(./secrets)');
    denied(await call(MAIN, 'write_file', { path: 'locked/old.txt' }), 'Edit(./locked/**)', 'Edit(./locked/**)');
  });

  it('writing into .git/ needs a rule that names .git', async () => {
    const anywhere = layer({ allow: ['Edit(**)'] });
    denied(await call(anywhere, 'write_file', { path: '.git/hooks/pre-commit' }), 'names .git explicitly');
    denied(await call(anywhere, 'write_file', { path: 'sub/.git/config' }), 'names .git explicitly');
    allowed(await call(anywhere, 'write_file', { path: 'src/.gitignore' }), 'Edit(**)');
    allowed(await call(layer({ allow: ['Edit(./.git/info/**)'] }), 'write_file', { path: '.git/info/exclude' }), 'Edit(./.git/info/**)');
  });

  it('a path that may not be read may not be edited', async () => {
    const rs = layer({ deny: ['Read(**/.env*)'], allow: ['Edit(**)'] });
    denied(await call(rs, 'edit_file', { path: '.env' }), 'may not be edited', 'Read(**/.env*)');
  });

  it('a symlink inside the workspace is judged by its target', async () => {
    // src/inner-link → docs/readme.md: Read(./src/**) does not allow it, since the target is docs/readme.md.
    const srcOnly = layer({ allow: ['Read(./src/**)'] });
    denied(await call(srcOnly, 'read_file', { path: 'src/inner-link' }), 'no allow rule matches Read(docs/readme.md)');
  });

  it('asks when an ask rule matches, and denies the unmatched', async () => {
    const d = await call(MAIN, 'write_file', { path: 'package.json' });
    assert.equal(d.decision, 'ask');
    assert.equal(d.rule, 'Edit(./package.json)');
    assert.match(d.reason, /requires approval/);
    allowed(await call(MAIN, 'read_file', { path: 'package.json' }), 'Read(./package.json)');
    denied(await call(MAIN, 'read_file', { path: 'README.md' }), 'no allow rule matches Read(README.md)');
    denied(await call(MAIN, 'list_dir', {}), 'no allow rule matches Read(.)');
    denied(await call(MAIN, 'search_files', { pattern: 'x' }), 'no allow rule matches Read(.)');
    allowed(await call(layer({ allow: ['Read(**)'] }), 'search_files', { pattern: 'x' }), 'Read(**)');
  });

  it('refuses missing or non-string paths', async () => {
    denied(await call(MAIN, 'read_file', {}), 'needs a "path"');
    denied(await call(MAIN, 'write_file', { path: 42 }), 'path must be a string');
  });

  it('checkResolvedPath decides entries found while recursing', () => {
    const rs = layer({ deny: ['Read(**/.env*)'], allow: ['Read(**)'] });
    allowed(checkResolvedPath(rs, 'Read', { rel: 'src/a.ts', abs: path.join(ws, 'src/a.ts') }), 'Read(**)');
    denied(checkResolvedPath(rs, 'Read', { rel: 'config/.env', abs: path.join(ws, 'config/.env') }), 'Read(**/.env*)', 'Read(**/.env*)');
  });

  it('glob syntax: ** at any depth, * within a segment, ?, classes, braces, dotfiles', () => {
    const t = (rule: string, rel: string): string =>
      checkResolvedPath(layer({ allow: [rule] }), 'Read', { rel, abs: path.join(ws, rel) }).decision;
    assert.equal(t('Read(**/.env*)', '.env'), 'allow');
    assert.equal(t('Read(**/.env*)', 'a/b/.env.prod'), 'allow');
    assert.equal(t('Read(src/*.ts)', 'src/a.ts'), 'allow');
    assert.equal(t('Read(src/*.ts)', 'src/deep/b.ts'), 'deny');
    assert.equal(t('Read(src/*)', 'src/.hidden'), 'allow');
    assert.equal(t('Read(*.md)', 'docs/readme.md'), 'deny'); // anchored at the root
    assert.equal(t('Read(src/?.ts)', 'src/a.ts'), 'allow');
    assert.equal(t('Read(src/?.ts)', 'src/ab.ts'), 'deny');
    assert.equal(t('Read(src/[ab].ts)', 'src/b.ts'), 'allow');
    assert.equal(t('Read(src/[!ab].ts)', 'src/b.ts'), 'deny');
    assert.equal(t('Read({src,docs}/**)', 'docs/x.md'), 'allow');
    assert.equal(t('Read(src/**/b.ts)', 'src/b.ts'), 'allow');
    assert.equal(t('Read(src/**/b.ts)', 'src/x/y/b.ts'), 'allow');
    assert.equal(t('Read(src/**/b.ts)', 'srcx/b.ts'), 'deny');
    assert.equal(t('Read(src)', 'src/x/y.ts'), 'allow'); // a directory covers its contents
    assert.equal(t('Read(src/**)', 'src-other/x'), 'deny');
  });
});

describe('commands', () => {
  const run = (rs: RuleSet, argv: unknown): Promise<Decision> => call(rs, 'run_command', { argv });

  it('exact rules match the exact argv only', async () => {
    allowed(await run(MAIN, ['npm', 'test']), 'Bash(npm test)');
    denied(await run(MAIN, ['npm', 'test', '--x']), 'no allow rule matches Bash(npm test --x)');
    denied(await run(MAIN, ['npm']), 'no allow rule matches Bash(npm)');
    denied(await run(MAIN, ['/usr/bin/npm', 'test']), 'is a path');
  });

  it('`:*` is a prefix: the words, then anything; the last word may gain a :suffix', async () => {
    for (const argv of [['npm', 'run', 'test'], ['npm', 'run', 'test:unit'], ['npm', 'run', 'test', '--', '--x']]) {
      allowed(await run(MAIN, argv), 'Bash(npm run test:*)');
    }
    denied(await run(MAIN, ['npm', 'run', 'testevil']), 'no allow rule matches Bash(npm run testevil)');
    denied(await run(MAIN, ['npm', 'run', 'build']), 'no allow rule matches');
    const star = layer({ allow: ['Bash(npm run *)'] });
    allowed(await run(star, ['npm', 'run', 'lint']), 'Bash(npm run *)');
    denied(await run(star, ['npm', 'ci']), 'no allow rule matches');
  });

  it('deny rules win over allow rules', async () => {
    denied(await run(MAIN, ['git', 'push', 'origin', 'main']), 'denied by rule "Bash(git push:*)"', 'Bash(git push:*)');
    denied(await run(MAIN, ['git', 'push']), 'Bash(git push:*)', 'Bash(git push:*)');
    allowed(await run(MAIN, ['git', 'status']), 'Bash(git:*)');
  });

  it('refuses shell metacharacters in any argument, naming the argument', async () => {
    const any = layer({ allow: ['Bash'] });
    const cases: [string[], string][] = [
      [['npm', 'test;rm -rf /'], 'argv[1] "test;rm -rf /" contains shell metacharacter ";"'],
      [['echo', '$(id)'], 'argv[1] "$(id)" contains shell metacharacter "$"'],
      [['echo', '`id`'], 'argv[1] "`id`" contains shell metacharacter "`"'],
      [['npm', 'test', 'x\nrm -rf /'], 'argv[2] "x\\nrm -rf /" contains shell metacharacter newline'],
      [['ls', '|', 'sh'], 'argv[1] "|" contains shell metacharacter "|"'],
      [['npm', 'test', '&&', 'rm'], 'argv[2] "&&" contains shell metacharacter "&"'],
      [['cat', '<', '/etc/passwd'], 'shell metacharacter "<"'],
      [['npm', 'test\r'], 'carriage return'],
    ];
    for (const [argv, reason] of cases) denied(await run(any, argv), reason);
  });

  it('refuses malformed argv', async () => {
    denied(await run(MAIN, 'npm test'), 'argv must be an array');
    denied(await run(MAIN, []), 'argv is empty');
    denied(await run(MAIN, ['npm', 1]), 'argv[1] is not a string');
  });

  it('refuses interpreters with inline code and command-running options, even under broad rules', async () => {
    const broad = layer({
      allow: ['Bash', 'Bash(bash:*)', 'Bash(sh:*)', 'Bash(node:*)', 'Bash(python:*)', 'Bash(python3:*)', 'Bash(find:*)',
        'Bash(xargs:*)', 'Bash(git:*)', 'Bash(env:*)', 'Bash(sudo:*)', 'Bash(perl:*)', 'Bash(deno:*)', 'Bash(npx:*)',
        'Bash(npm:*)', 'Bash(npm test:*)', 'Bash(npm run test:*)'],
    });
    const cases: [string[], string][] = [
      [['bash', '-c', 'ls'], '"bash -c"'],
      [['bash', '-lc', 'ls'], '"bash -lc"'],
      [['sh', '-c', 'ls'], '"sh -c"'],
      [['node', '-e', 'process.exit'], '"node -e"'],
      [['node', '--eval=1'], '"node --eval=1"'],
      [['node', '-p', '1'], '"node -p"'],
      [['node', '--import', 'data:text/javascript,x'], 'data:'],
      [['deno', 'eval', 'x'], '"deno eval"'],
      [['python', '-c', 'import os'], '"python -c"'],
      [['python3', '-c', 'import os'], '"python3 -c"'],
      [['perl', '-e', 'x'], '"perl -e"'],
      [['find', '.', '-exec', 'rm', '{}', '+'], '"find -exec"'],
      [['find', '.', '-name', 'x', '-delete'], '"find -delete"'],
      [['xargs', 'rm'], '"xargs" runs another program'],
      [['git', '-c', 'core.sshCommand=x', 'fetch'], '"git -c"'],
      [['git', '--config-env=core.sshCommand=X', 'fetch'], '--config-env'],
      [['git', 'config', 'core.fsmonitor', 'x'], '"git config"'],
      [['git', 'clone', '--upload-pack=x', 'repo'], '--upload-pack'],
      [['git', 'rebase', '--exec', 'x', 'main'], '"git rebase"'],
      [['env', 'FOO=1', 'npm', 'test'], '"env" runs another program'],
      [['sudo', 'npm', 'test'], '"sudo" runs another program'],
      [['/bin/bash', '-c', 'ls'], '"bash -c"'],
      [['npx', 'some-pkg'], '"npx" runs whatever package it names'],
      [['npm', 'exec', 'some-pkg'], '"npm exec" runs whatever package it names'],
      [['npm', 'test', '--script-shell=./evil.sh'], '--script-shell'],
      [['npm', 'run', 'test:unit', '--node-options=--require=./evil.js'], '--node-options'],
    ];
    for (const [argv, cause] of cases) {
      const d = await run(broad, argv);
      denied(d, cause);
      assert.match(d.reason, /refused unless a rule names that form/);
    }
  });

  it('refuses sed forms that run commands, write files or edit in place, and git options that write or leave the workspace', async () => {
    const broad = layer({ allow: ['Bash', 'Bash(sed:*)', 'Bash(sed -n:*)', 'Bash(git:*)', 'Bash(git diff:*)', 'Bash(git log:*)'] });
    const cases: [string[], string][] = [
      [['sed', '-n', '1e touch x', 'f'], '"sed 1e touch x" (its e/w/W command'],
      [['sed', 'e', 'f'], '"sed e"'],
      [['sed', '-n', 'w out.txt', 'f'], '"sed w out.txt"'],
      [['sed', '-n', '/x/W out.txt', 'f'], '"sed /x/W out.txt"'],
      [['sed', '-n', '/x/{w out.txt}', 'f'], '"sed /x/{w out.txt}"'],
      [['sed', 's/a/b/w out.txt', 'f'], '"sed s/a/b/w out.txt"'],
      [['sed', 's/a/id/e', 'f'], '"sed s/a/id/e"'],
      [['sed', 's,a,b,ge', 'f'], '"sed s,a,b,ge"'],
      [['sed', '-e', 'p', '-e', 'w out', 'f'], '"sed w out"'],
      [['sed', '--expression=1e id', 'f'], '"sed 1e id"'],
      [['sed', '--expression', '1e id', 'f'], '"sed 1e id"'],
      [['sed', '-ew x', 'f'], '"sed w x"'],
      [['sed', '-n', '--', 'w x', 'f'], '"sed w x"'],
      [['sed', '-f', 'script.sed', 'f'], '"sed -f" (runs a script from a file)'],
      [['sed', '--file=script.sed', 'f'], '"sed --file=script.sed"'],
      [['sed', '-i', 's/a/b/', 'f'], '"sed -i" (edits files in place)'],
      [['sed', '-i.bak', 's/a/b/', 'f'], '"sed -i.bak"'],
      [['sed', '-ni', 'p', 'f'], '"sed -ni"'],
      [['sed', '--in-place', 's/a/b/', 'f'], '"sed --in-place"'],
      [['sed', '--sandbox', '-i', 's/a/b/', 'f'], '"sed -i"'],
      [['git', 'diff', '--output=/tmp/x'], '"git diff --output=/tmp/x" (writes the file it names)'],
      [['git', 'diff', '--output', 'x', 'a', 'b'], '"git diff --output"'],
      [['git', 'log', '--output=x'], '"git log --output=x"'],
      [['git', 'format-patch', '-o', '/tmp/p', 'HEAD~1'], '"git format-patch -o"'],
      [['git', 'archive', '-o', 'x.tar', 'HEAD'], '"git archive -o"'],
      [['git', '-c', 'core.pager=x', 'log'], '"git -c"'],
      [['git', '--exec-path=/tmp', 'status'], '"git --exec-path"'],
      [['git', 'log', '--upload-pack=x'], '"git log --upload-pack=x" (runs a command)'],
      [['git', 'fetch', '--upload-pack', 'x', 'origin'], '--upload-pack'],
      [['git', '-C', '/tmp/other', 'status'], '"git -C /tmp/other" (a repository outside the workspace)'],
      [['git', '-C', '../other', 'status'], '"git -C ../other"'],
      [['git', '--git-dir=/tmp/r/.git', 'log'], '"git --git-dir /tmp/r/.git"'],
      [['git', '--work-tree', '~/x', 'status'], '"git --work-tree ~/x"'],
    ];
    for (const [argv, cause] of cases) {
      const d = await run(broad, argv);
      denied(d, cause);
      assert.match(d.reason, /refused unless a rule names that form/);
    }
    assert.equal(cases.length, 33);
    // Reading forms stay allowed by the broad rules.
    for (const argv of [
      ['sed', '-n', '1,5p', 'f'],
      ['sed', 's/a/b/g', 'f'],
      ['sed', '-E', 's/[a]+/b/', 'f'],
      ['sed', '-n', '/x/!p', 'f'],
      ['sed', '1a text with w in it', 'f'],
      ['sed', 's/w/e/', 'f'],
      ['sed', '--quiet', '-e', '10q', 'f'],
      ['sed', '--sandbox', '-n', 'w x', 'f'],
      ['git', 'diff', '--stat'],
      ['git', '-C', 'sub', 'status'],
      ['git', 'log', '--oneline', '-5'],
    ]) {
      assert.equal((await run(broad, argv)).decision, 'allow', argv.join(' '));
    }
  });

  it('a rule that names a sed or git form allows exactly that form', async () => {
    const rs = layer({ allow: ['Bash(sed -i "s/a/b/" notes.txt)', 'Bash(git diff --output=out/diff.txt)', 'Bash(sed -n:*)'] });
    allowed(await run(rs, ['sed', '-i', 's/a/b/', 'notes.txt']), 'Bash(sed -i "s/a/b/" notes.txt)');
    denied(await run(rs, ['sed', '-i', 's/a/b/', 'other.txt']), '"sed -i"');
    allowed(await run(rs, ['git', 'diff', '--output=out/diff.txt']), 'Bash(git diff --output=out/diff.txt)');
    denied(await run(rs, ['sed', '-n', 'w x', 'f']), 'rule "Bash(sed -n:*)" matches but does not spell it out');
  });

  it('a rule that spells out the form allows it', async () => {
    const rs = layer({
      allow: ['Bash(node -e "console.log")', 'Bash(python3 -c:*)', 'Bash(git -c color.ui=false status)', 'Bash(env FOO=1 npm test)', 'Bash(./scripts/check.sh:*)'],
    });
    allowed(await run(rs, ['node', '-e', 'console.log']), 'Bash(node -e "console.log")');
    denied(await run(rs, ['node', '-e', 'other']), '"node -e"');
    allowed(await run(rs, ['python3', '-c', 'import sys']), 'Bash(python3 -c:*)');
    allowed(await run(rs, ['git', '-c', 'color.ui=false', 'status']), 'Bash(git -c color.ui=false status)');
    denied(await run(rs, ['git', '-c', 'core.sshCommand=x', 'status']), '"git -c"');
    allowed(await run(rs, ['env', 'FOO=1', 'npm', 'test']), 'Bash(env FOO=1 npm test)');
    denied(await run(rs, ['env', 'FOO=1', 'sh']), '"env" runs another program');
    allowed(await run(rs, ['./scripts/check.sh', '--fast']), 'Bash(./scripts/check.sh:*)');
    allowed(await run(layer({ allow: ['Bash(npx tsc:*)'] }), ['npx', 'tsc', '--noEmit']), 'Bash(npx tsc:*)');
    denied(await run(layer({ allow: ['Bash'] }), ['./scripts/check.sh']), 'is a path: allowed only by a rule naming that exact path');
  });
});

describe('urls', () => {
  const fetchUrl = (rs: RuleSet, url: unknown): Promise<Decision> => call(rs, 'fetch_url', { url });

  it('matches exact hosts after URL normalisation', async () => {
    allowed(await fetchUrl(MAIN, 'https://api.github.com/repos/x'), 'WebFetch(domain:api.github.com)');
    allowed(await fetchUrl(MAIN, 'http://API.GitHub.com./x'), 'WebFetch(domain:api.github.com)');
    denied(await fetchUrl(MAIN, 'https://api.github.com.evil.com/'), 'no allow rule matches WebFetch(domain:api.github.com.evil.com)');
    denied(await fetchUrl(MAIN, 'https://evil.com/?u=https://api.github.com'), 'WebFetch(domain:evil.com)');
  });

  it('sees through the userinfo trick', async () => {
    denied(await fetchUrl(MAIN, 'http://api.github.com@evil.com/'), 'the host is actually evil.com');
    denied(checkUrl(layer({ allow: ['WebFetch(domain:evil.com)'] }), 'https://user:pw@evil.com/'), 'credentials');
  });

  it('subdomain wildcards match subdomains only', () => {
    allowed(checkUrl(MAIN, 'https://a.example.com/'), 'WebFetch(domain:*.example.com)');
    allowed(checkUrl(MAIN, 'https://deep.a.example.com:8443/x'), 'WebFetch(domain:*.example.com)');
    denied(checkUrl(MAIN, 'https://example.com/'), 'no allow rule matches WebFetch(domain:example.com)');
    denied(checkUrl(MAIN, 'https://evilexample.com/'), 'no allow rule matches WebFetch(domain:evilexample.com)');
  });

  it('refuses other schemes and junk', async () => {
    const any = layer({ allow: ['WebFetch'] });
    denied(checkUrl(any, 'file:///etc/passwd'), 'scheme "file" is not allowed');
    denied(checkUrl(any, 'ftp://example.com/'), 'scheme "ftp"');
    denied(checkUrl(any, 'not a url'), 'not a valid absolute URL');
    denied(await fetchUrl(any, 42), 'url must be a string');
  });

  it('refuses private, loopback, link-local and IPv6 literals unless a rule names them exactly', () => {
    const any = layer({ allow: ['WebFetch', 'WebFetch(domain:*.example.com)'] });
    for (const [url, host] of [
      ['http://127.0.0.1/', '127.0.0.1'],
      ['http://127.1.2.3:8080/', '127.1.2.3'],
      ['http://0x7f000001/', '127.0.0.1'],
      ['http://2130706433/', '127.0.0.1'],
      ['http://10.0.0.1/', '10.0.0.1'],
      ['http://172.16.5.4/', '172.16.5.4'],
      ['http://192.168.1.1/', '192.168.1.1'],
      ['http://100.64.0.1/', '100.64.0.1'],
      ['http://169.254.169.254/latest/meta-data/', '169.254.169.254'],
      ['http://0.0.0.0/', '0.0.0.0'],
      ['http://[::1]/', '[::1]'],
      ['http://[fe80::1]/', '[fe80::1]'],
      ['http://[fd12:3456::1]/', '[fd12:3456::1]'],
      ['http://[::ffff:127.0.0.1]/', '[::ffff:7f00:1]'],
      ['http://[2001::1]/', '[2001::1]'],
      ['http://[64:ff9b:1::a00:1]/', '[64:ff9b:1::a00:1]'],
      ['http://[100::1]/', '[100::1]'],
      ['http://192.0.2.1/', '192.0.2.1'],
      ['http://[2001:db8::1]/', '[2001:db8::1]'],
      ['http://[2002:a00:1::1]/', '[2002:a00:1::1]'],
      ['http://localhost:3000/', 'localhost'],
      ['http://app.localhost/', 'app.localhost'],
    ]) {
      denied(checkUrl(any, url), `allowed only by a rule naming it exactly (WebFetch(domain:${host}))`);
    }
    allowed(checkUrl(any, 'http://8.8.8.8/'), 'WebFetch');
    // An IPv4-mapped address reaches its IPv4 address: a public one is public.
    allowed(checkUrl(any, 'http://[::ffff:8.8.8.8]/'), 'WebFetch');
    allowed(checkUrl(any, 'http://[2606:4700::1111]/'), 'WebFetch');
    const named = layer({ allow: ['WebFetch(domain:127.0.0.1)', 'WebFetch(domain:[::1])', 'WebFetch(domain:localhost)'] });
    allowed(checkUrl(named, 'http://127.0.0.1:8080/x'), 'WebFetch(domain:127.0.0.1)');
    allowed(checkUrl(named, 'http://[::1]/'), 'WebFetch(domain:[::1])');
    allowed(checkUrl(named, 'http://localhost/'), 'WebFetch(domain:localhost)');
    denied(checkUrl(named, 'http://127.0.0.2/'), 'allowed only by a rule naming it exactly');
  });

  it('isPrivateAddress', () => {
    for (const ip of ['127.0.0.1', '10.255.0.1', '172.31.255.255', '192.168.0.1', '100.127.0.1', '169.254.1.1', '0.0.0.0',
      '224.0.0.1', '255.255.255.255', '::', '::1', 'fe80::1', 'fe80::1%eth0', 'fc00::1', 'fdff::1', '::ffff:10.0.0.1',
      '[::1]', '64:ff9b::a00:1', '2002:a00:1::1', 'ff02::1', 'not-an-ip', '2001::1', '64:ff9b:1::808:808', '100::1', '::2',
      '192.0.2.1', '198.51.100.1', '203.0.113.1', '2001:db8::1', '::8.8.8.8']) {
      assert.equal(isPrivateAddress(ip), true, ip);
    }
    for (const ip of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2606:4700::1111', '2a00:1450::1', '64:ff9b::808:808', '::ffff:8.8.8.8']) {
      assert.equal(isPrivateAddress(ip), false, ip);
    }
  });

  it('checkResolvedAddress catches DNS rebinding', () => {
    const rs = layer({ allow: ['WebFetch(domain:*.example.com)', 'WebFetch(domain:intranet.example.com)'] });
    denied(checkResolvedAddress(rs, 'https://rebind.example.com/', '10.0.0.5'), 'rebind.example.com resolved to 10.0.0.5');
    denied(checkResolvedAddress(rs, 'https://rebind.example.com/', '::ffff:127.0.0.1'), 'private');
    allowed(checkResolvedAddress(rs, 'https://rebind.example.com/', '93.184.216.34'));
    allowed(checkResolvedAddress(rs, 'https://intranet.example.com/', '10.0.0.5'), 'WebFetch(domain:intranet.example.com)');
  });
});

describe('mcp tools and agents', () => {
  it('mcp__ globs', async () => {
    allowed(await call(MAIN, 'mcp__github__get_issue', {}), 'mcp__github__get_*');
    denied(await call(MAIN, 'mcp__github__create_issue', {}), 'no allow rule matches mcp__github__create_issue');
    denied(await call(MAIN, 'mcp__gitlab__get_issue', {}), 'no allow rule matches mcp__gitlab__get_issue');
    const server = layer({ deny: ['mcp__github__delete_*'], allow: ['mcp__github'] });
    allowed(checkMcpTool(server, 'mcp__github__create_issue'), 'mcp__github');
    denied(checkMcpTool(server, 'mcp__github__delete_repo'), 'mcp__github__delete_*', 'mcp__github__delete_*');
    denied(checkMcpTool(server, 'mcp__githubx__get'), 'no allow rule matches');
  });

  it('Agent(name)', async () => {
    allowed(await call(MAIN, 'agent__test-gen', {}), 'Agent(test-gen)');
    denied(await call(MAIN, 'agent__architect', {}), 'no allow rule matches Agent(architect)');
    allowed(checkAgent(layer({ allow: ['Agent'] }), 'anything'), 'Agent');
    allowed(checkAgent(layer({ allow: ['Agent(test-*)'] }), 'test-gen'), 'Agent(test-*)');
    denied(checkAgent(layer({ deny: ['Agent(sec-audit)'], allow: ['Agent'] }), 'sec-audit'), 'Agent(sec-audit)', 'Agent(sec-audit)');
  });

  it('unknown tools are denied', async () => {
    denied(await call(MAIN, 'rm_rf', {}), 'unknown tool "rm_rf"');
  });
});

describe('seed translation and agents', () => {
  function agent(over: Omit<Partial<AgentDefinition>, 'tools'> & { tools?: Partial<AgentDefinition['tools']> }): AgentDefinition {
    const { tools, ...rest } = over;
    return {
      name: 'a',
      description: 'd',
      maxTurns: 8,
      maxOutputTokens: 4096,
      inputSchema: { type: 'object' },
      expose: true,
      successCriteria: [],
      artifacts: [],
      tools: { builtin: [], mcp: [], fs: { read: false, write: false }, net: { allow: [] }, shell: { exec: [] }, ...tools },
      policies: { context: {}, secrets: { redact: false } },
      budget: {},
      permissions: { deny: [], ask: [], allow: [] },
      agents: [],
      source: { file: 'a.yaml', format: 'yaml' },
      ...rest,
    } as AgentDefinition;
  }

  it('translates seed tools to rules', () => {
    assert.deepEqual(
      translateSeedTools({
        builtin: ['read_file', 'list_dir', 'search_files', 'write_file', 'edit_file', 'run_command', 'fetch_url'],
        mcp: ['github'],
        fs: { read: true, write: ['src/**', 'docs/*.md'] },
        net: { allow: ['api.github.com', '*.example.com'] },
        shell: { exec: ['npm test', 'git status', 'npm run lint:*'] },
      }),
      ['Read(**)', 'Edit(src/**)', 'Edit(docs/*.md)', 'WebFetch(domain:api.github.com)', 'WebFetch(domain:*.example.com)',
        'Bash(npm test)', 'Bash(git status)', 'Bash(npm run lint:*)', 'mcp__github__*'],
    );
    const t = (tools: Partial<AgentDefinition['tools']>): string[] => translateSeedTools(agent({ tools }).tools);
    assert.deepEqual(t({ fs: { read: false, write: true } }), ['Edit(**)']);
    assert.deepEqual(t({ builtin: ['read_file'] }), ['Read(**)']);
    // Built-in run_command/fetch_url alone grant nothing: the lists are the grant.
    assert.deepEqual(t({ builtin: ['run_command', 'fetch_url'] }), []);
  });

  it('an agent gets explicit rules plus seed rules; explicit deny comes first', async () => {
    const a = agent({
      name: 'researcher',
      tools: { builtin: ['read_file', 'run_command'], fs: { read: true, write: ['notes/**'] }, shell: { exec: ['npm test', 'npm run lint:*'] }, mcp: ['github'] },
      permissions: { deny: ['Read(**/.env*)'], ask: [], allow: ['WebFetch(domain:api.github.com)'] },
      agents: ['test-gen'],
    });
    const rs = rulesForAgent(a);
    assert.equal(rs.layers.length, 1);
    denied(await call(rs, 'read_file', { path: '.env' }), 'Read(**/.env*)', 'Read(**/.env*)');
    assert.match((await call(rs, 'read_file', { path: '.env' })).reason, /\[agent researcher\]/);
    allowed(await call(rs, 'read_file', { path: 'README.md' }), 'Read(**)');
    allowed(await call(rs, 'write_file', { path: 'notes/n.md' }), 'Edit(notes/**)');
    denied(await call(rs, 'write_file', { path: 'src/a.ts' }), 'no allow rule matches Edit(src/a.ts)');
    allowed(await call(rs, 'run_command', { argv: ['npm', 'test'] }), 'Bash(npm test)');
    denied(await call(rs, 'run_command', { argv: ['npm', 'test', '--watch'] }), 'no allow rule matches');
    allowed(await call(rs, 'run_command', { argv: ['npm', 'run', 'lint:fix'] }), 'Bash(npm run lint:*)');
    allowed(await call(rs, 'fetch_url', { url: 'https://api.github.com/' }), 'WebFetch(domain:api.github.com)');
    allowed(await call(rs, 'mcp__github__anything', {}), 'mcp__github__*');
    allowed(await call(rs, 'agent__test-gen', {}), 'Agent(test-gen)');
    denied(await call(rs, 'agent__architect', {}), 'Agent(architect)');
  });
});

describe('intersection', () => {
  const child = { layers: [{ label: 'agent child', deny: ['Read(./src/secret.ts)'], ask: [], allow: ['Read(**)', 'Edit(**)', 'Bash', 'WebFetch', 'mcp__github'] }] };
  const caller = { layers: [{ label: 'agent caller', deny: [], ask: ['Edit(./package.json)'], allow: ['Read(./src/**)', 'Edit(**)', 'WebFetch(domain:api.github.com)', 'mcp__github__get_*'] }] };
  const both = intersect(child, caller);

  it('cannot widen what the caller allows', async () => {
    allowed(await call(both, 'read_file', { path: 'src/a.ts' }));
    denied(await call(both, 'read_file', { path: 'README.md' }), /no allow rule matches Read\(README.md\) \[agent caller\]/);
    denied(await call(both, 'run_command', { argv: ['npm', 'test'] }), 'no allow rule matches Bash(npm test) [agent caller]');
    denied(checkUrl(both, 'https://evil.com/'), '[agent caller]');
    allowed(checkUrl(both, 'https://api.github.com/'));
    denied(checkMcpTool(both, 'mcp__github__create_issue'), '[agent caller]');
  });

  it('the child can add denies; asks survive', async () => {
    denied(await call(both, 'read_file', { path: 'src/secret.ts' }), 'Read(./src/secret.ts)', 'Read(./src/secret.ts)');
    const d = await call(both, 'write_file', { path: 'package.json' });
    assert.equal(d.decision, 'ask');
    assert.equal(d.rule, 'Edit(./package.json)');
  });

  it('is plain JSON and survives a round trip', async () => {
    const copy = JSON.parse(JSON.stringify(both)) as RuleSet;
    assert.deepEqual(copy, both);
    assert.deepEqual(await call(copy, 'read_file', { path: 'README.md' }), await call(both, 'read_file', { path: 'README.md' }));
    assert.equal(intersect(both, caller).layers.length, 2); // identical layers are not repeated
  });

  it('toolOffered follows the intersection', () => {
    assert.equal(toolOffered(child, 'run_command'), true);
    assert.equal(toolOffered(both, 'run_command'), false);
    assert.equal(toolOffered(both, 'read_file'), true);
    assert.equal(toolOffered(both, 'mcp__github__get_issue'), true);
    assert.equal(toolOffered(both, 'mcp__github__create_issue'), false);
  });

  it('property: an allow from the intersection is an allow from both', () => {
    const pathRules = ['Read(**)', 'Read(./src/**)', 'Read(src/*.ts)', 'Read(**/.env*)', 'Read(./docs)', 'Read', 'Read(*.md)'];
    const names = ['src/a.ts', 'src/deep/b.ts', '.env', 'docs/x.md', 'README.md', '.', 'src/.env.x'];
    const cmdRules = ['Bash', 'Bash(npm test)', 'Bash(npm:*)', 'Bash(npm run test:*)', 'Bash(git:*)', 'Bash(git push:*)'];
    const argvs = [['npm', 'test'], ['npm', 'run', 'test:x'], ['git', 'push'], ['git', 'status'], ['bash', '-c', 'x']];
    const sub = <T>(xs: T[]) => fc.subarray(xs);
    const lay = <T extends string>(xs: T[]) => fc.record({ deny: sub(xs), ask: sub(xs), allow: sub(xs) });
    fc.assert(
      fc.property(lay(pathRules), lay(pathRules), fc.constantFrom(...names), (a, b, rel) => {
        const A = { layers: [a] };
        const B = { layers: [b] };
        const t = { rel, abs: path.join('/w', rel) };
        const d = checkResolvedPath(intersect(A, B), 'Read', t).decision;
        const da = checkResolvedPath(A, 'Read', t).decision;
        const db = checkResolvedPath(B, 'Read', t).decision;
        if (d === 'allow') return da === 'allow' && db === 'allow';
        if (d === 'ask') return da !== 'deny' && db !== 'deny' && (da === 'ask' || db === 'ask');
        return da === 'deny' || db === 'deny';
      }),
    );
    fc.assert(
      fc.property(lay(cmdRules), lay(cmdRules), fc.constantFrom(...argvs), (a, b, argv) => {
        const d = checkCommand(intersect({ layers: [a] }, { layers: [b] }), argv).decision;
        if (d !== 'allow') return true;
        return checkCommand({ layers: [a] }, argv).decision === 'allow' && checkCommand({ layers: [b] }, argv).decision === 'allow';
      }),
    );
  });
});

describe('toolOffered', () => {
  it('offers a tool only if some allow/ask rule of its kind exists and no bare deny rules it out', () => {
    assert.equal(toolOffered(MAIN, 'read_file'), true);
    assert.equal(toolOffered(MAIN, 'write_file'), true);
    assert.equal(toolOffered(MAIN, 'run_command'), true);
    assert.equal(toolOffered(MAIN, 'fetch_url'), true);
    assert.equal(toolOffered(MAIN, 'agent__test-gen'), true);
    assert.equal(toolOffered(MAIN, 'agent__architect'), false);
    assert.equal(toolOffered(layer({ allow: ['Read(**)'] }), 'run_command'), false);
    assert.equal(toolOffered(layer({ deny: ['Bash'], allow: ['Bash(npm test)'] }), 'run_command'), false);
    assert.equal(toolOffered(layer({ deny: ['Read'], allow: ['Edit(**)'] }), 'edit_file'), false);
    assert.equal(toolOffered(layer({ ask: ['Edit(./x)'] }), 'edit_file'), true);
    assert.equal(toolOffered(MAIN, 'no_such_tool'), false);
    assert.equal(toolOffered({ layers: [] }, 'read_file'), false);
  });
});

describe('rule parsing', () => {
  it('reports clear errors', () => {
    const err = (s: string): string => {
      const r = parseRule(s);
      assert.equal(r.ok, false, s);
      return r.ok ? '' : r.error;
    };
    assert.equal(err('Read('), 'invalid permission rule "Read(": missing ")"');
    assert.match(err('Read)'), /"\)" without "\("/);
    assert.match(err('Read()'), /empty "\(\)"; write Read without parentheses/);
    assert.match(err('read(src/**)'), /unknown tool "read" \(did you mean Read\?\)/);
    assert.match(err('Write(src/**)'), /did you mean Edit\?/);
    assert.match(err('Read(~/.ssh/**)'), /"~" is not expanded/);
    assert.match(err('Read(../x)'), /"\.\." is not allowed/);
    assert.match(err('Read(src/[ab)'), /unterminated "\["/);
    assert.match(err('Read({a,b)'), /unbalanced "\{"/);
    assert.match(err('Bash(ls *.ts)'), /"\*" is only supported as a trailing/);
    assert.match(err('Bash(curl x | sh)'), /shell metacharacter "\|"/);
    assert.match(err('Bash("unterminated)'), /unterminated " quote/);
    assert.match(err('Bash(:*)'), /no command/);
    assert.match(err('WebFetch(api.github.com)'), /expected "domain:<host>"/);
    assert.match(err('WebFetch(domain:https://x.com)'), /not a host name/);
    assert.match(err('WebFetch(domain:x.com:8080)'), /not a host name/);
    assert.match(err('WebFetch(domain:a.*.com)'), /only supported as a leading/);
    assert.match(err('Agent(a b)'), /agent names use/);
    assert.match(err('mcp__'), /missing server name/);
    assert.match(err('mcp__a b'), /MCP rules look like/);
    assert.match(err(''), /empty rule/);
  });

  it('validateRules returns index and message for each bad rule', () => {
    assert.deepEqual(
      validateRules(['Read(./src/**)', 'Bash(', 'Frob', 'Bash(npm run test:*)', 'WebFetch(domain:*.example.com)']).map((e) => e.index),
      [1, 2],
    );
    const [e] = validateRules(['Edit(./x', 'Read']);
    assert.deepEqual(e, { index: 0, message: 'invalid permission rule "Edit(./x": missing ")"' });
  });

  it('an invalid deny rule denies everything; an invalid allow rule grants nothing', async () => {
    denied(await call(layer({ deny: ['Read('], allow: ['Read(**)'] }), 'read_file', { path: 'src/a.ts' }), 'invalid deny rule denies everything');
    denied(await call(layer({ allow: ['Read(', 'Read(src/**)'] }), 'read_file', { path: 'docs/readme.md' }), 'no allow rule matches');
    denied(await call({ layers: [] }, 'read_file', { path: 'src/a.ts' }), 'no permission rules');
  });
});
