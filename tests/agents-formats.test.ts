// Claude Code (.md) and Codex (.toml) agent files → AgentDefinition, the store's reload semantics
// (last good version kept, dynamic agents), and create_agent's JSON extraction and permission clamp.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { formatLoadError, type AgentDefinition } from '../src/agents/definition.js';
import { clampToCeiling, extractJson, validateDraft } from '../src/agents/create.js';
import { loadAgentSources, parseClaudeAgent, parseCodexAgent } from '../src/agents/formats.js';
import { AgentStore } from '../src/agents/store.js';
import { CreateAgentCeilingSchema, DEFAULT_CEILING } from '../src/config/agents-config.js';
import { rulesForAgent, toolOffered } from '../src/permissions/index.js';

const READ = ['read_file', 'list_dir', 'search_files'];
const tmpRoot = mkdtempSync(path.join(tmpdir(), 'delegate-formats-test-'));
after(() => rmSync(tmpRoot, { recursive: true, force: true }));

function claude(text: string) {
  return parseClaudeAgent(text, 'a.md').result;
}
function codex(text: string) {
  return parseCodexAgent(text, 'a.toml').result;
}
function ok(r: { agent?: AgentDefinition; errors: { file: string }[] }): AgentDefinition {
  assert.deepEqual(r.errors.map((e) => formatLoadError(e as any)), []);
  return r.agent!;
}

describe('Claude Code sub-agents (.md)', () => {
  test('front matter and body become the definition; read tools, model alias', () => {
    const a = ok(claude('---\nname: reviewer\ndescription: Reviews code.\ntools: Read, Grep, Glob, LS\nmodel: sonnet\ncolor: blue\n---\n\nYou review code.\n\nCite lines.\n'));
    assert.equal(a.name, 'reviewer');
    assert.equal(a.description, 'Reviews code.');
    assert.equal(a.instructions, 'You review code.\n\nCite lines.');
    assert.equal(a.model, 'anthropic/claude-sonnet-5-5');
    assert.deepEqual(a.tools.builtin, READ);
    assert.deepEqual(a.source, { file: 'a.md', format: 'claude-md' });
  });

  test('model: inherit / none = server default; haiku, opus, claude ids, provider refs', () => {
    const m = (model: string) => ok(claude(`---\nname: x\ndescription: d\nmodel: ${model}\n---\nb`)).model;
    assert.equal(m('inherit'), undefined);
    assert.equal(ok(claude('---\nname: x\ndescription: d\n---\nb')).model, undefined);
    assert.equal(m('haiku'), 'anthropic/claude-haiku-5-5');
    assert.equal(m('opus'), 'anthropic/claude-opus-5-5');
    assert.equal(m('claude-sonnet-4-5-20250929'), 'anthropic/claude-sonnet-4-5-20250929');
    assert.equal(m('ollama/qwen2.5-coder:14b'), 'ollama/qwen2.5-coder:14b');
  });

  test('tools omitted = read-only here (not every tool)', () => {
    const a = ok(claude('---\nname: x\ndescription: d\n---\nbody'));
    assert.deepEqual(a.tools.builtin, READ);
    assert.equal(a.tools.fs.write, false);
  });

  test('Edit/Write → write tools; Bash → run_command with no command allowed; WebFetch → public hosts; mcp__ kept as rules', () => {
    const a = ok(claude('---\nname: x\ndescription: d\ntools: [Read, Write, Bash, WebFetch, mcp__github__get_issue, TodoWrite]\n---\nb'));
    assert.deepEqual(a.tools.builtin, [...READ, 'write_file', 'edit_file', 'run_command', 'fetch_url']);
    assert.deepEqual(a.permissions.allow, ['mcp__github__get_issue']);
    const rules = rulesForAgent(a);
    assert.equal(toolOffered(rules, 'run_command'), false, 'Bash alone grants no command');
    assert.equal(toolOffered(rules, 'write_file'), true);
    assert.ok(rules.layers[0].allow.includes('WebFetch(domain:*)'));
  });

  test('commands come from permissions rules, and only for a tool the file lists', () => {
    const a = ok(claude('---\nname: x\ndescription: d\ntools: Read, Bash\npermissions:\n  allow: ["Bash(npm test)"]\n  deny: ["Read(**/.env)"]\n---\nb'));
    assert.deepEqual(a.permissions.allow, ['Bash(npm test)']);
    assert.deepEqual(a.permissions.deny, ['Read(**/.env)']);
    assert.equal(toolOffered(rulesForAgent(a), 'run_command'), true);
    const r = claude('---\nname: x\ndescription: d\ntools: Read\npermissions:\n  allow: ["Bash(npm test)"]\n---\nb');
    assert.match(formatLoadError(r.errors[0]), /^a\.md:5:1: permissions: permissions\.allow: rule "Bash\(npm test\)" needs Bash in tools/);
  });

  test('disallowedTools become deny rules', () => {
    const a = ok(claude('---\nname: x\ndescription: d\ntools: Read, Edit, Bash\ndisallowedTools: Bash, Write\n---\nb'));
    assert.deepEqual(a.permissions.deny, ['Bash', 'Edit']);
    assert.equal(toolOffered(rulesForAgent(a), 'write_file'), false);
  });

  test('errors carry the line of the key in the file and a hint', () => {
    const r = claude('---\nname: x\ndescription: d\ntools: Raed\nmodle: sonnet\n---\nb');
    const msgs = r.errors.map(formatLoadError);
    assert.ok(msgs.includes('a.md:4:1: tools: unknown tool "Raed" (did you mean "Read"?); known: Read, Grep, Glob, LS, NotebookRead, Edit, Write, MultiEdit, NotebookEdit, Bash, WebFetch, mcp__<server>__<tool>'), msgs.join('\n'));
    assert.ok(msgs.includes('a.md:5:1: modle: unknown key "modle" (did you mean "model"?)'), msgs.join('\n'));
    assert.match(formatLoadError(claude('---\nname: bad name\ndescription: d\n---\nb').errors[0]), /^a\.md:2:1: name: invalid name "bad name"/);
    assert.match(formatLoadError(claude('no front matter').errors[0]), /^a\.md:1:1: expected YAML front matter/);
    assert.match(formatLoadError(claude('---\nname: x\ndescription: [d\n---\nb').errors[0]), /^a\.md:\d+:\d+: YAML syntax error in front matter/);
    assert.match(formatLoadError(claude('---\nname: x\n---\nb').errors[0]), /^a\.md:1:1: description: required field is missing/);
    assert.match(formatLoadError(claude('---\nname: x\ndescription: d\nmodel: gpt4\n---\nb').errors[0]), /^a\.md:4:1: model: unknown model "gpt4"/);
  });

  test('our own keys (max_turns, timeout_s …) may be added', () => {
    const a = ok(claude('---\nname: x\ndescription: d\nmax_turns: 3\ntimeout_s: 60\n---\nb'));
    assert.equal(a.maxTurns, 3);
    assert.equal(a.timeoutS, 60);
  });
});

describe('Codex agents (.toml)', () => {
  test('name, description, developer_instructions, model; read-only by default', () => {
    const a = ok(codex('name = "explorer"\ndescription = "Traces code."\nmodel = "gpt-5-codex"\nmodel_reasoning_effort = "high"\ndeveloper_instructions = """\nTrace it.\nCite files.\n"""\n'));
    assert.equal(a.name, 'explorer');
    assert.equal(a.instructions, 'Trace it.\nCite files.\n');
    assert.equal(a.model, 'openai/gpt-5-codex');
    assert.deepEqual(a.tools.builtin, READ);
    assert.deepEqual(a.source, { file: 'a.toml', format: 'codex-toml' });
  });

  test('sandbox_mode workspace-write → write tools, never commands; [permissions] table; [mcp_servers.x] → server names', () => {
    const a = ok(codex('name = "w"\ndescription = "d"\ndeveloper_instructions = "i"\nsandbox_mode = "workspace-write"\n\n[permissions]\nallow = ["Bash(npm test)"]\n\n[mcp_servers.github]\ncommand = "x"\n'));
    assert.deepEqual(a.tools.builtin, [...READ, 'write_file', 'edit_file']);
    assert.deepEqual(a.permissions.allow, ['Bash(npm test)']);
    assert.deepEqual(a.tools.mcp, ['github']);
  });

  test('errors name the line of the key, and TOML syntax errors their line and column', () => {
    const msgs = codex('name = "x"\ndescription = "d"\ndeveloper_instruction = "i"\nsandbox_mode = "yolo"\n').errors.map(formatLoadError);
    assert.ok(msgs.includes('a.toml:3:1: developer_instruction: unknown key "developer_instruction" (did you mean "developer_instructions"?)'), msgs.join('\n'));
    assert.ok(msgs.some((m) => /^a\.toml:4:1: sandbox_mode: expected one of "read-only", "workspace-write", "danger-full-access"/.test(m)), msgs.join('\n'));
    assert.ok(msgs.some((m) => /^a\.toml:1:1: developer_instructions: required field is missing/.test(m)), msgs.join('\n'));
    assert.match(formatLoadError(codex('name = "x"\ndescription = \n').errors[0]), /^a\.toml:2:\d+: TOML syntax error/);
    assert.match(formatLoadError(codex('name = "x y"\ndescription = "d"\ndeveloper_instructions = "i"\n').errors[0]), /^a\.toml:1:1: name: invalid name "x y"/);
  });
});

describe('loading several directories', () => {
  test('formats by directory; the first definition of a name wins, the later file gets an error', () => {
    const dir = path.join(tmpRoot, 'multi');
    mkdirSync(path.join(dir, 'yaml'), { recursive: true });
    mkdirSync(path.join(dir, 'claude'), { recursive: true });
    writeFileSync(path.join(dir, 'yaml', 'same.yaml'), 'name: same\ndescription: from yaml\n');
    writeFileSync(path.join(dir, 'claude', 'same.md'), '---\nname: same\ndescription: from claude\n---\nb');
    writeFileSync(path.join(dir, 'claude', 'other.md'), '---\nname: other\ndescription: o\n---\nb');
    writeFileSync(path.join(dir, 'claude', 'README.md'), '# not an agent');
    const c = loadAgentSources([
      { dir: path.join(dir, 'yaml'), format: 'yaml' },
      { dir: path.join(dir, 'claude'), format: 'claude-md' },
      { dir: path.join(dir, 'missing'), format: 'codex-toml', optional: true },
    ]);
    assert.equal(c.agents.get('same')?.description, 'from yaml');
    assert.ok(c.agents.has('other'));
    assert.deepEqual(c.errors.map(formatLoadError), [`${path.join(dir, 'claude', 'same.md')}:2:1: name: duplicate agent name "same": already defined in ${path.join(dir, 'yaml', 'same.yaml')}; this file is ignored`]);
  });
});

describe('AgentStore reload', () => {
  test('a broken file keeps serving its last good agent; a removed file removes it; dynamic agents stay', () => {
    const dir = path.join(tmpRoot, 'store');
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'a.yaml');
    writeFileSync(file, 'name: a\ndescription: first\n');
    const store = new AgentStore(dir);
    let changes = 0;
    store.on('change', () => changes++);
    store.load();
    assert.equal(store.get('a')?.description, 'first');
    writeFileSync(file, 'name: a\ndescription: first\nmax_turns: many\n');
    store.reload();
    assert.equal(store.get('a')?.description, 'first');
    assert.ok(store.formattedErrors().some((e) => e.includes('max_turns')));
    assert.ok(store.formattedErrors().some((e) => e.includes('still serving the last good version of agent "a"')));
    writeFileSync(file, 'name: a\ndescription: second\n');
    store.reload();
    assert.equal(store.get('a')?.description, 'second');
    assert.deepEqual(store.errors, []);

    const dyn = { ...store.get('a')!, name: 'made', source: { file: 'dynamic:made', format: 'dynamic' as const } };
    store.addDynamic(dyn);
    assert.throws(() => store.addDynamic(dyn), /already exists/);
    rmSync(file);
    store.reload();
    assert.equal(store.get('a'), undefined);
    assert.equal(store.get('made')?.source.file, 'dynamic:made');
    assert.equal(changes, 5);
  });

  test('a file broken at start-up has no last good version', () => {
    const dir = path.join(tmpRoot, 'store2');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'b.yaml'), 'name: b\n');
    const store = new AgentStore(dir);
    store.load();
    assert.equal(store.get('b'), undefined);
    assert.equal(store.errors.length, 1);
  });
});

describe('create_agent helpers', () => {
  test('extractJson: bare, fenced, with prose; errors for the model', () => {
    assert.deepEqual(extractJson('{"a":1}'), { value: { a: 1 } });
    assert.deepEqual(extractJson('Sure:\n```json\n{"a": 2}\n```\nDone.'), { value: { a: 2 } });
    assert.deepEqual(extractJson('Here it is: {"a": 3} hope it helps'), { value: { a: 3 } });
    assert.match((extractJson('no json') as any).error, /no JSON object/);
    assert.match((extractJson('{"a": }') as any).error, /not valid JSON/);
    assert.match((extractJson('```json\n[1]\n```') as any).error, /one JSON object/);
  });

  test('validateDraft reports schema problems as field: message', () => {
    assert.deepEqual(validateDraft({ name: 'x', description: 'd' }), []);
    const p = validateDraft({ name: 'x y', descripton: 'd' });
    assert.ok(p.some((m) => /^name: invalid name/.test(m)), p.join('\n'));
    assert.ok(p.some((m) => /descripton.*did you mean "description"/.test(m)), p.join('\n'));
  });

  test('the default ceiling leaves read access only', () => {
    const { raw, removed } = clampToCeiling(
      {
        name: 'x',
        description: 'd',
        tools: { fs: { write: true }, shell: { exec: ['rm -rf /'] }, net: { allow: ['evil.com'] }, mcp: ['github', 'read_file', 'run_command'] },
        permissions: { allow: ['Read(src/**)', 'Edit(**)', 'Bash(ls)', 'WebFetch(domain:x.com)', 'mcp__github__x', 'Agent(y)'], ask: ['Bash(npm publish)'], deny: ['Read(**/.env)'] },
        agents: ['y'],
        expose: false,
        sandbox: { network: true },
      },
      DEFAULT_CEILING,
    );
    assert.deepEqual(raw, {
      name: 'x',
      description: 'd',
      tools: { fs: { read: true }, mcp: ['read_file'] },
      permissions: { allow: ['Read(src/**)'], deny: ['Read(**/.env)'] },
    });
    for (const r of ['tools.fs.write: true', 'tools.shell.exec: rm -rf /', 'tools.net.allow: evil.com', 'tools.mcp: github', 'tools.mcp: run_command', 'permissions.allow: Edit(**)', 'permissions.ask: Bash(npm publish)', 'agents: y', 'expose: false', 'sandbox.network: true']) {
      assert.ok(removed.includes(r), `${r} not in ${removed.join(' | ')}`);
    }
  });

  test('a wider ceiling keeps exactly what it names', () => {
    const ceiling = CreateAgentCeilingSchema.parse({ fs: { write: ['docs/**'] }, shell: { exec: ['npm test'] }, net: { allow: ['api.github.com'] }, mcp: ['github'], agents: ['helper'] });
    const { raw, removed } = clampToCeiling(
      {
        name: 'x',
        description: 'd',
        tools: { fs: { read: true, write: ['docs/**', 'src/**'] }, shell: { exec: ['npm test', 'npm publish'] }, net: { allow: ['api.github.com', 'evil.com'] }, mcp: ['github', 'slack'] },
        permissions: { allow: ['Edit(docs/**)', 'Edit(src/**)', 'Bash(npm test)', 'WebFetch(domain:api.github.com)', 'mcp__github__get_issue', 'mcp__slack__post'] },
        agents: ['helper', 'other'],
      },
      ceiling,
    );
    assert.deepEqual(raw.tools, { fs: { read: true, write: ['docs/**'] }, shell: { exec: ['npm test'] }, net: { allow: ['api.github.com'] }, mcp: ['github'] });
    assert.deepEqual((raw.permissions as any).allow, ['Edit(docs/**)', 'Bash(npm test)', 'WebFetch(domain:api.github.com)', 'mcp__github__get_issue']);
    assert.deepEqual(raw.agents, ['helper']);
    assert.equal(removed.length, 7, removed.join(' | '));
  });

  test('sandbox.network survives only a ceiling that grants it', () => {
    const draft = () => ({ name: 'x', description: 'd', sandbox: { network: true } });
    const wide = CreateAgentCeilingSchema.parse({ sandbox: { network: true } });
    assert.deepEqual(clampToCeiling(draft(), wide).raw.sandbox, { network: true });
    assert.deepEqual(clampToCeiling(draft(), wide).removed, []);
    assert.equal(clampToCeiling(draft(), DEFAULT_CEILING).raw.sandbox, undefined);
  });
});
