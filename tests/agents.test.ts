import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatLoadError } from '../src/agents/definition.js';
import type { AgentLoadError } from '../src/agents/definition.js';
import { loadAgentFile, loadAgentsDir } from '../src/agents/loader.js';
import { suggest } from '../src/file-errors/positions.js';
import { AgentFileSchema, FS_READ_TOOLS, defaultInputSchema } from '../src/agents/schema.js';
import { objectKeysAt } from '../src/file-errors/schema-introspection.js';

const shippedDir = fileURLToPath(new URL('../agents/', import.meta.url));
const tmpRoot = mkdtempSync(join(tmpdir(), 'delegate-agents-test-'));
after(() => rmSync(tmpRoot, { recursive: true, force: true }));

let dirCount = 0;
/** A fresh directory holding the given files. */
function fixtureDir(files: Record<string, string>): string {
  const dir = join(tmpRoot, `d${dirCount++}`);
  mkdirSync(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}
function fixture(text: string, name = 'agent.yaml'): string {
  return join(fixtureDir({ [name]: text }), name);
}
function only(errors: AgentLoadError[]): AgentLoadError {
  assert.equal(errors.length, 1, `expected one error, got:\n${errors.map(formatLoadError).join('\n')}`);
  return errors[0];
}

describe('shipped agents', () => {
  const catalog = loadAgentsDir(shippedDir);
  const expected = ['architect', 'code-reviewer', 'researcher', 'sec-audit', 'test-gen'];

  test('all five load with no errors', () => {
    assert.deepEqual(catalog.errors.map(formatLoadError), []);
    assert.deepEqual([...catalog.agents.keys()].sort(), expected);
  });

  test('each is read-only, documented and uses the server default model', () => {
    for (const agent of catalog.agents.values()) {
      assert.equal(basename(agent.source.file).replace(/\.ya?ml$/, ''), agent.name);
      assert.deepEqual(agent.tools.builtin, [...FS_READ_TOOLS], agent.name);
      assert.equal(agent.tools.fs.write, false, agent.name);
      assert.deepEqual(agent.tools.mcp, [], agent.name);
      assert.ok(agent.description.length > 200, `${agent.name}: description too short`);
      assert.ok((agent.instructions ?? '').length > 1500, `${agent.name}: instructions too short`);
      assert.ok(agent.goal, `${agent.name}: goal`);
      assert.ok(agent.successCriteria.length >= 3, `${agent.name}: success criteria`);
      assert.ok(agent.maxTurns >= 10 && agent.maxTurns <= 20, `${agent.name}: max turns`);
      assert.equal(agent.model, undefined, agent.name);
      assert.equal(agent.expose, true);
      assert.equal(agent.inputSchema.type, 'object');
      assert.ok((agent.inputSchema.required as string[]).includes('task'), `${agent.name}: task is required`);
      // Read-only agents must not promise to write files or run commands.
      assert.doesNotMatch(agent.instructions ?? '', /\b(write_file|edit_file|run_command|fetch_url)\b/, agent.name);
    }
  });

  test('sec-audit uses the seed spelling: goal as description, secrets redacted', () => {
    const sec = catalog.agents.get('sec-audit')!;
    assert.equal(sec.description, sec.goal);
    assert.equal(sec.policies.secrets.redact, true);
    assert.equal(sec.policies.context.retention, 'run');
    assert.deepEqual(sec.artifacts, [{ name: 'security-report.md' }]);
  });

  test('code-reviewer declares a review.md artifact and a custom input schema', () => {
    const cr = catalog.agents.get('code-reviewer')!;
    assert.deepEqual(cr.artifacts.map((a) => a.name), ['review.md']);
    assert.deepEqual(Object.keys(cr.inputSchema.properties as object), ['task', 'diff', 'paths', 'context']);
  });
});

describe('normalisation', () => {
  test('defaults are applied to a minimal file', () => {
    const file = fixture('name: minimal\ndescription: Does a thing.\n');
    const { agent, errors } = loadAgentFile(file);
    assert.deepEqual(errors, []);
    assert.deepEqual(agent, {
      name: 'minimal',
      description: 'Does a thing.',
      maxTurns: 8,
      maxOutputTokens: 4096,
      inputSchema: defaultInputSchema(),
      expose: true,
      successCriteria: [],
      artifacts: [],
      tools: { builtin: [], mcp: [], fs: { read: false, write: false }, net: { allow: [] }, shell: { exec: [] } },
      policies: { context: {}, secrets: { redact: false } },
      budget: {},
      permissions: { deny: [], ask: [], allow: [] },
      sandbox: { network: false },
      agents: [],
      allowReentry: false,
      source: { file, format: 'yaml' },
    });
    const props = agent!.inputSchema.properties as Record<string, { type: string; description: string }>;
    assert.deepEqual(Object.keys(props), ['task', 'context']);
    assert.equal(props.task.type, 'string');
    assert.ok(props.task.description.length > 0 && props.context.description.length > 0);
    assert.deepEqual(agent!.inputSchema.required, ['task']);
  });

  test('default input schemas are not shared between agents', () => {
    const a = loadAgentFile(fixture('name: a\ndescription: x\n')).agent!;
    const b = loadAgentFile(fixture('name: b\ndescription: x\n')).agent!;
    assert.notEqual(a.inputSchema, b.inputSchema);
  });

  test('seed-format file: goal, tools, policies, artifacts', () => {
    const file = fixture(`name: seed-agent
goal: Summarise the repository.
tools:
  mcp: [github, read_file, github, write_file]
  fs: {read: true, write: false}
  net: {allow: [api.github.com]}
  shell: {exec: ["npm test"]}
policies:
  context: {max_tokens: 100000, retention: "run"}
  secrets: {redact: true}
success_criteria: ["cites files"]
artifacts: ["summary.md", {name: report.md, description: The report}]
`);
    const { agent, errors } = loadAgentFile(file);
    assert.deepEqual(errors, []);
    assert.ok(agent);
    assert.equal(agent.description, 'Summarise the repository.');
    assert.equal(agent.goal, 'Summarise the repository.');
    // Canonical order, deduped; read_file came from both fs.read and tools.mcp.
    assert.deepEqual(agent.tools.builtin, ['read_file', 'list_dir', 'search_files', 'write_file', 'run_command', 'fetch_url']);
    assert.deepEqual(agent.tools.mcp, ['github']);
    assert.deepEqual(agent.tools.fs, { read: true, write: false });
    assert.deepEqual(agent.tools.net, { allow: ['api.github.com'] });
    assert.deepEqual(agent.tools.shell, { exec: ['npm test'] });
    assert.deepEqual(agent.policies, { context: { maxTokens: 100000, retention: 'run' }, secrets: { redact: true } });
    assert.deepEqual(agent.successCriteria, ['cites files']);
    assert.deepEqual(agent.artifacts, [{ name: 'summary.md' }, { name: 'report.md', description: 'The report' }]);
  });

  test('extended fields are normalised to camelCase', () => {
    const { agent, errors } = loadAgentFile(
      fixture(`name: ext
description: Extended.
goal: Be extended.
instructions: |
  Do it well.
model: openrouter/meta-llama/llama-3.1-70b
max_turns: 12
max_output_tokens: 2000
temperature: 0.2
timeout_s: 120
expose: false
input_schema: {type: object, properties: {q: {type: string}}, required: [q]}
output_schema: {type: object, properties: {answer: {type: string}}}
tools: {fs: {read: true, write: ["docs/**", "*.md"]}}
budget: {run_tokens: 50000, run_usd: 0.5, daily_tokens: 1000000, daily_usd: 5}
permissions: {deny: ["Read(./.env)"], ask: ["Edit(./src/**)"], allow: ["Read(./src/**)"]}
agents: [test-gen, researcher, test-gen]
`),
    );
    assert.deepEqual(errors, []);
    assert.ok(agent);
    assert.equal(agent.description, 'Extended.');
    assert.equal(agent.instructions, 'Do it well.\n');
    assert.equal(agent.model, 'openrouter/meta-llama/llama-3.1-70b');
    assert.equal(agent.maxTurns, 12);
    assert.equal(agent.maxOutputTokens, 2000);
    assert.equal(agent.temperature, 0.2);
    assert.equal(agent.timeoutS, 120);
    assert.equal(agent.expose, false);
    assert.deepEqual(agent.inputSchema, { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] });
    assert.deepEqual(agent.outputSchema, { type: 'object', properties: { answer: { type: 'string' } } });
    assert.deepEqual(agent.tools.fs, { read: true, write: ['docs/**', '*.md'] });
    assert.deepEqual(agent.tools.builtin, ['read_file', 'list_dir', 'search_files', 'write_file', 'edit_file']);
    assert.deepEqual(agent.budget, { runTokens: 50000, runUsd: 0.5, dailyTokens: 1000000, dailyUsd: 5 });
    assert.deepEqual(agent.permissions, { deny: ['Read(./.env)'], ask: ['Edit(./src/**)'], allow: ['Read(./src/**)'] });
    assert.deepEqual(agent.agents, ['test-gen', 'researcher']);
  });

  test('an empty write-glob list or an empty allow list grants nothing', () => {
    const { agent } = loadAgentFile(fixture('name: a\ngoal: x\ntools: {fs: {write: []}, net: {allow: []}, shell: {exec: []}}\n'));
    assert.deepEqual(agent!.tools.builtin, []);
    assert.equal(agent!.tools.fs.write, false);
  });
});

describe('errors', () => {
  test('unknown top-level key: did-you-mean at the key position', () => {
    const file = fixture('name: typo\ndescripton: Reviews code.\n');
    const { agent, errors } = loadAgentFile(file);
    assert.equal(agent, undefined);
    const unknown = errors.find((e) => e.field === 'descripton');
    assert.deepEqual(unknown, {
      file,
      line: 2,
      column: 1,
      field: 'descripton',
      message: 'unknown key "descripton" (did you mean "description"?)',
    });
    assert.equal(formatLoadError(unknown!), `${file}:2:1: descripton: unknown key "descripton" (did you mean "description"?)`);
  });

  test('unknown nested keys: did-you-mean from that level, including camelCase spellings', () => {
    const file = fixture('name: n\ngoal: g\ntools:\n  fs:\n    raed: true\npolicies:\n  context: {maxTokens: 5}\n');
    const { errors } = loadAgentFile(file);
    assert.deepEqual(
      errors.map((e) => [e.line, e.column, e.field, e.message]),
      [
        [5, 5, 'tools.fs.raed', 'unknown key "raed" (did you mean "read"?)'],
        [7, 13, 'policies.context.maxTokens', 'unknown key "maxTokens" (did you mean "max_tokens"?)'],
      ],
    );
  });

  test('unknown key with no close match lists the allowed keys', () => {
    const e = only(loadAgentFile(fixture('name: n\ngoal: g\ntools:\n  database: yes\n')).errors);
    assert.equal(e.field, 'tools.database');
    assert.equal(e.message, 'unknown key "database"; allowed keys here: mcp, fs, net, shell');
    assert.deepEqual([e.line, e.column], [4, 3]);
  });

  test('wrong type: field path, expected and found, at the value position', () => {
    const file = fixture('name: n\ngoal: g\ntools:\n  fs:\n    read: "yes"\n');
    const e = only(loadAgentFile(file).errors);
    assert.equal(e.file, file);
    assert.equal(e.field, 'tools.fs.read');
    assert.match(e.message, /^expected boolean, got string "yes"$/);
    assert.deepEqual([e.line, e.column], [5, 11]);
  });

  test('range, integer and union errors are described in words', () => {
    const { errors } = loadAgentFile(
      fixture(`name: n
goal: g
max_turns: 500
max_output_tokens: 1.5
tools:
  fs: {write: "yes"}
artifacts:
  - ok.md
  - {name: 3}
model: claude
`),
    );
    assert.deepEqual(
      errors.map((e) => `${e.line}:${e.column} ${e.field}: ${e.message}`),
      [
        '3:12 max_turns: must be at most 200, got integer 500',
        '4:20 max_output_tokens: expected integer, got number 1.5',
        '6:15 tools.fs.write: expected boolean or list of strings, got string "yes"',
        '9:12 artifacts[1].name: expected string, got integer 3',
        '10:8 model: expected "<provider>/<model-id>" (e.g. "anthropic/claude-sonnet-5-5"), got "claude"',
      ],
    );
  });

  test('YAML syntax error is reported at its own position', () => {
    const file = fixture('name: broken\ndescription: x\ntools: [read_file\nmax_turns: 3\n');
    const e = only(loadAgentFile(file).errors);
    assert.equal(e.file, file);
    assert.equal(e.field, '');
    assert.match(e.message, /^YAML syntax error: /);
    assert.equal(e.line, 4);
    assert.equal(typeof e.column, 'number');
  });

  test('duplicate keys are a YAML error', () => {
    const e = only(loadAgentFile(fixture('name: a\ngoal: x\ngoal: y\n')).errors);
    assert.match(e.message, /unique/);
    assert.equal(e.line, 3);
  });

  test('invalid name', () => {
    const e = only(loadAgentFile(fixture('name: "code reviewer!"\ndescription: x\n')).errors);
    assert.equal(e.field, 'name');
    assert.match(e.message, /^invalid name "code reviewer!"/);
    assert.deepEqual([e.line, e.column], [1, 7]);
    const long = only(loadAgentFile(fixture(`name: ${'a'.repeat(65)}\ndescription: x\n`)).errors);
    assert.equal(long.field, 'name');
  });

  test('missing name and missing description/goal', () => {
    const { errors } = loadAgentFile(fixture('instructions: hi\n'));
    assert.deepEqual(
      errors.map((e) => [e.field, e.line, e.message]),
      [
        ['name', 1, 'required field is missing (expected string)'],
        ['description', 1, 'either "description" or "goal" is required (it becomes the tool description MCP clients see)'],
      ],
    );
  });

  test('input_schema must be a JSON Schema of type object', () => {
    const notObjectType = only(loadAgentFile(fixture('name: a\ngoal: x\ninput_schema:\n  type: array\n')).errors);
    assert.equal(notObjectType.field, 'input_schema.type');
    assert.equal(notObjectType.message, 'expected "object", got string "array"');
    assert.deepEqual([notObjectType.line, notObjectType.column], [4, 9]);

    const notMapping = only(loadAgentFile(fixture('name: a\ngoal: x\ninput_schema: [task]\n')).errors);
    assert.equal(notMapping.field, 'input_schema');
    assert.equal(notMapping.message, 'expected mapping, got a list');

    const noType = only(loadAgentFile(fixture('name: a\ngoal: x\ninput_schema: {properties: {}}\n')).errors);
    assert.equal(noType.field, 'input_schema.type');
    assert.match(noType.message, /required field is missing/);

    const badRequired = only(
      loadAgentFile(fixture('name: a\ngoal: x\ninput_schema: {type: object, properties: {task: {type: string}}, required: [taks]}\n')).errors,
    );
    assert.equal(badRequired.field, 'input_schema.required[0]');
    assert.match(badRequired.message, /"taks" is listed as required but is not defined in properties/);
  });

  test('empty file and non-mapping file', () => {
    assert.match(only(loadAgentFile(fixture('# nothing here\n')).errors).message, /^file is empty/);
    const list = only(loadAgentFile(fixture('- name: a\n')).errors);
    assert.deepEqual([list.field, list.message], ['', 'expected mapping, got a list']);
  });

  test('unreadable file is an error, not a throw', () => {
    const e = only(loadAgentFile(join(tmpRoot, 'no-such-file.yaml')).errors);
    assert.match(e.message, /^cannot read file/);
  });
});

describe('loadAgentsDir', () => {
  test('duplicate names: the first file by name wins, the error names both files', () => {
    const dir = fixtureDir({
      'b.yaml': 'name: same\ndescription: second\n',
      'a.yml': 'name: same\ndescription: first\n',
    });
    const catalog = loadAgentsDir(dir);
    assert.equal(catalog.agents.get('same')?.description, 'first');
    const e = only(catalog.errors);
    assert.equal(e.file, join(dir, 'b.yaml'));
    assert.equal(e.field, 'name');
    assert.deepEqual([e.line, e.column], [1, 7]);
    assert.ok(e.message.includes(join(dir, 'a.yml')), e.message);
    assert.match(e.message, /duplicate agent name "same"/);
  });

  test('a broken file does not prevent the others from loading', () => {
    const dir = fixtureDir({
      '1-good.yaml': 'name: good-one\ndescription: fine\n',
      '2-syntax.yaml': 'name: [oops\n',
      '3-invalid.yaml': 'name: bad\ndescription: x\nmax_turns: lots\n',
      '4-good.yml': 'name: good-two\ngoal: fine too\n',
      'notes.txt': 'not an agent',
      '.hidden.yaml': 'this: is skipped',
    });
    mkdirSync(join(dir, 'sub.yaml')); // a directory with an agent-like name is skipped
    const catalog = loadAgentsDir(dir);
    assert.deepEqual([...catalog.agents.keys()], ['good-one', 'good-two']);
    assert.deepEqual(
      catalog.errors.map((e) => basename(e.file)),
      ['2-syntax.yaml', '3-invalid.yaml'],
    );
    assert.equal(catalog.errors[1].field, 'max_turns');
  });

  test('missing directory is one clear error', () => {
    const dir = join(tmpRoot, 'does-not-exist');
    assert.deepEqual(loadAgentsDir(dir), {
      agents: new Map(),
      errors: [{ file: dir, field: '', message: 'agents directory not found' }],
    });
  });
});

describe('schema helpers', () => {
  test('allowed keys come from the schema shape', () => {
    assert.deepEqual(objectKeysAt(['tools', 'fs'], AgentFileSchema), ['read', 'write']);
    assert.deepEqual(objectKeysAt(['artifacts', 0], AgentFileSchema), ['name', 'description']);
    assert.ok(objectKeysAt([], AgentFileSchema)!.includes('success_criteria'));
    assert.deepEqual(objectKeysAt([], AgentFileSchema), Object.keys(AgentFileSchema.shape));
  });

  test('suggest', () => {
    assert.equal(suggest('descripton', ['name', 'description', 'goal']), 'description');
    assert.equal(suggest('maxTurns', ['max_turns', 'max_output_tokens']), 'max_turns');
    assert.equal(suggest('instrutcions', ['instructions']), 'instructions');
    assert.equal(suggest('database', ['mcp', 'fs', 'net', 'shell']), undefined);
  });
});
