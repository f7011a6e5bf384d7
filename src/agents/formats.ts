// Agent files in other tools' formats, loaded into the same `AgentDefinition` as our YAML:
//
//   claude-md   Claude Code sub-agents: `*.md` with YAML front matter (name, description, tools, model, …)
//               and the Markdown body as the instructions.
//   codex-toml  Codex custom agents: `*.toml` with name, description, developer_instructions, model, ….
//
// Each file is translated into the YAML file shape (snake_case `AgentFile`), validated by the same zod
// schema and normalised by the same `normalise`, so every rule of our own format (names, models,
// permission rules) holds for them too. Errors name the file, line and column of the key in the file,
// using the file's own field names.
//
// Also here: loading every directory agents come from (config/agent-sources.ts) into one catalog
// (`loadAgentSources`), which the store uses for start-up and hot reload.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { LineCounter, isMap, isScalar, parseDocument } from 'yaml';
import type { Pair } from 'yaml';
import { parse as parseToml, TomlError } from 'smol-toml';
import type { AgentFileFormat } from '../config/agents-config.js';
import type { AgentOrigin, AgentSource } from '../config/agent-sources.js';
import { parseRule } from '../permissions/rules.js';
import type { AgentDefinition, AgentLoadError } from './definition.js';
import { addFirstByName, loadAgentFile, type AgentFileResult } from './loader.js';
import { AgentFileSchema, normalise, type AgentFile } from './schema.js';
import { formatPath, suggest } from '../file-errors/positions.js';
import { objectKeysAt } from '../file-errors/schema-introspection.js';
import { isMcpToolName } from '../contract/tool-names.js';

export type { AgentFileFormat } from '../config/agents-config.js';

const EXTENSIONS: Record<AgentFileFormat, RegExp> = {
  yaml: /\.ya?ml$/i,
  'claude-md': /\.md$/i,
  'codex-toml': /\.toml$/i,
};

/** A loaded catalog, plus what each file yielded (the store keeps a broken file's last good agent). */
export interface SourcesCatalog {
  agents: Map<string, AgentDefinition>;
  errors: AgentLoadError[];
  /** Every agent file seen, in load order: its agent when valid (even if a duplicate), else undefined. */
  files: Map<string, AgentDefinition | undefined>;
  /** Where each served agent comes from (by name). */
  origins: Map<string, AgentOrigin>;
  /** User or shipped agents not served because an agent of a nearer origin has their name. */
  shadowed: { name: string; file: string; by: string }[];
}

/**
 * Loads every source. Never throws. A missing non-optional directory is an error; within a directory
 * files load in sorted name order; a name already taken (by an earlier file or directory) is an error
 * on the later file, which is ignored.
 */
export function loadAgentSources(sources: readonly AgentSource[], opts: LoadOptions = {}): SourcesCatalog {
  const agents = new Map<string, AgentDefinition>();
  const errors: AgentLoadError[] = [];
  const files = new Map<string, AgentDefinition | undefined>();
  const origins = new Map<string, AgentOrigin>();
  const shadowed: SourcesCatalog['shadowed'] = [];
  for (const src of sources) {
    const origin = src.origin ?? 'workspace';
    const listed = listAgentFiles(src);
    if (!('files' in listed)) {
      if (listed.error) errors.push(listed.error);
      continue;
    }
    for (const file of listed.files) {
      const { result, nameLine } = loadAgentFileAs(file, src.format);
      if (result.agent && opts.providers) {
        const bad = checkProvider(result.agent, opts.providers);
        if (bad) {
          result.errors.push(bad);
          delete result.agent;
        }
      }
      errors.push(...result.errors);
      files.set(file, result.agent);
      if (!result.agent) continue;
      const taken = agents.get(result.agent.name);
      // A user's or shipped agent with a name the workspace (or the user) already uses: the nearer one wins.
      if (taken && origins.get(taken.name) !== origin && origin !== 'workspace') {
        shadowed.push({ name: result.agent.name, file, by: taken.source.file });
        continue;
      }
      addFirstByName(agents, errors, result.agent, nameLine !== undefined ? { line: nameLine, column: 1 } : {});
      if (!origins.has(result.agent.name)) origins.set(result.agent.name, origin);
    }
  }
  return { agents, errors, files, origins, shadowed };
}

export interface LoadOptions {
  /** Provider names a `model:` may use (built-in and delegate.providers); unchecked when absent. */
  providers?: readonly string[];
}

/**
 * An agent whose `model:` names no known provider would fail on every run: report it at load time, at
 * the `model` line of its file, with the nearest known provider ("opneai" → "openai").
 */
function checkProvider(agent: AgentDefinition, providers: readonly string[]): AgentLoadError | undefined {
  if (!agent.model) return undefined;
  const slash = agent.model.indexOf('/');
  const provider = slash > 0 ? agent.model.slice(0, slash) : agent.model;
  if (providers.includes(provider)) return undefined;
  const hint = suggest(provider, providers);
  const text = safeRead(agent.source.file) ?? '';
  const lines = text.split('\n');
  const index = lines.findIndex((l) => /^\s*model\s*[:=]/.test(l));
  const column = index >= 0 ? lines[index].indexOf(provider) + 1 || 1 : undefined;
  return {
    file: agent.source.file,
    ...(index >= 0 ? { line: index + 1, column } : {}),
    field: 'model',
    message: `unknown provider "${provider}" in "${agent.model}"${hint ? ` (did you mean "${hint}"?)` : ''}; known: ${providers.join(', ')} (add others under delegate.providers in mcp.json)`,
  };
}

function listAgentFiles(src: AgentSource): { files: string[] } | { error?: AgentLoadError } {
  let entries: string[];
  try {
    if (!statSync(src.dir).isDirectory()) return { error: { file: src.dir, field: '', message: 'agents path is not a directory' } };
    entries = readdirSync(src.dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && src.optional) return {};
    const message = code === 'ENOENT' ? 'agents directory not found' : `cannot read agents directory: ${(err as Error).message}`;
    return { error: { file: src.dir, field: '', message } };
  }
  const files = entries
    .filter((n) => EXTENSIONS[src.format].test(n) && !n.startsWith('.') && !(src.format === 'claude-md' && /^readme\.md$/i.test(n)))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((n) => path.join(src.dir, n))
    .filter((f) => {
      try {
        return statSync(f).isFile();
      } catch {
        return false; // a dangling symlink, or removed meanwhile
      }
    });
  return { files };
}

/** Loads one agent file in the given format. `nameLine` is where its name is written, when known. */
export function loadAgentFileAs(file: string, format: AgentFileFormat): { result: AgentFileResult; nameLine?: number } {
  if (format === 'yaml') {
    const result = loadAgentFile(file);
    return { result, nameLine: result.agent ? lineOf(safeRead(file) ?? '', /^name\s*:/m) : undefined };
  }
  const text = safeRead(file);
  if (text === undefined) return { result: { errors: [{ file, field: '', message: 'cannot read file' }] } };
  const parsed = format === 'claude-md' ? parseClaudeAgent(text, file) : parseCodexAgent(text, file);
  return { result: parsed.result, nameLine: parsed.positions.name?.line };
}

function safeRead(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function lineOf(text: string, re: RegExp): number | undefined {
  const m = re.exec(text);
  return m ? text.slice(0, m.index).split('\n').length : undefined;
}

// ---- shared translation machinery ----

type Pos = { line?: number; column?: number };

interface Translated {
  result: AgentFileResult;
  /** Where each top-level key of the source file is written. */
  positions: Record<string, Pos>;
}

/** Keys of our YAML format that other formats may also carry, unchanged (max_turns, timeout_s, budget, …). */
function passThroughKeys(exclude: readonly string[]): string[] {
  return (objectKeysAt([], AgentFileSchema) ?? []).filter((k) => !exclude.includes(k));
}

/**
 * Validates a translated file and normalises it. `sourceField` maps a path in our schema back to the key
 * the author wrote (for messages and positions).
 */
function finish(
  raw: Record<string, unknown>,
  file: string,
  format: AgentFileFormat,
  positions: Record<string, Pos>,
  sourceField: (path: readonly PropertyKey[]) => string,
  problems: AgentLoadError[],
): Translated {
  const parsed = AgentFileSchema.safeParse(raw);
  const errors = [...problems];
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const field = sourceField(issue.path);
      const top = field.split(/[.[]/)[0];
      const value = valueAt(raw, issue.path);
      const message =
        value === undefined && issue.code === 'invalid_type' ? 'required field is missing' : issue.message.replace(/^Invalid input: /, '');
      errors.push({ file, ...(positions[top] ?? { line: 1, column: 1 }), field, message });
    }
  }
  errors.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
  if (errors.length > 0 || !parsed.success) return { result: { errors }, positions };
  const agent = normaliseAs(parsed.data, file, format);
  return { result: { agent, errors: [] }, positions };
}

/** The same `normalise` YAML files go through, with the file's own format recorded as its source. */
function normaliseAs(data: AgentFile, file: string, format: AgentFileFormat): AgentDefinition {
  return { ...normalise(data, file), source: { file, format } };
}

function valueAt(data: unknown, p: readonly PropertyKey[]): unknown {
  let v = data;
  for (const seg of p) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[seg];
  }
  return v;
}

/** Unknown top-level keys → errors with a "did you mean" hint over what this format accepts. */
function unknownKeys(
  data: Record<string, unknown>,
  allowed: readonly string[],
  file: string,
  positions: Record<string, Pos>,
): AgentLoadError[] {
  const out: AgentLoadError[] = [];
  for (const key of Object.keys(data)) {
    if (allowed.includes(key)) continue;
    const hint = suggest(key, allowed);
    out.push({
      file,
      ...(positions[key] ?? {}),
      field: key,
      message: `unknown key "${key}"${hint ? ` (did you mean "${hint}"?)` : `; allowed keys here: ${allowed.join(', ')}`}`,
    });
  }
  return out;
}

function stringList(v: unknown): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v.split(',').map((s) => s.trim()).filter(Boolean);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.map((s) => s.trim()).filter(Boolean);
  return undefined;
}

// ---- Claude Code sub-agents (*.md) ----

/** Claude model aliases → our model refs. `inherit` (or none) = the server's default model. */
export const CLAUDE_MODEL_ALIASES: Record<string, string> = {
  sonnet: 'anthropic/claude-sonnet-5-5',
  opus: 'anthropic/claude-opus-5-5',
  haiku: 'anthropic/claude-haiku-5-5',
};

const CLAUDE_READ = ['Read', 'Grep', 'Glob', 'LS', 'NotebookRead'];
const CLAUDE_WRITE = ['Edit', 'Write', 'MultiEdit', 'NotebookEdit'];
/** Claude Code tools with no counterpart here: accepted and ignored. */
const CLAUDE_IGNORED_TOOLS = ['WebSearch', 'Task', 'Agent', 'TodoWrite', 'TodoRead', 'BashOutput', 'KillShell', 'KillBash', 'SlashCommand', 'Skill', 'ExitPlanMode', 'ListMcpResourcesTool', 'ReadMcpResourceTool'];
const CLAUDE_KNOWN_TOOLS = [...CLAUDE_READ, ...CLAUDE_WRITE, 'Bash', 'WebFetch', ...CLAUDE_IGNORED_TOOLS];
/** Claude Code front-matter keys that have no meaning here: accepted and ignored. */
const CLAUDE_IGNORED_KEYS = ['color', 'effort', 'permissionMode', 'skills', 'hooks', 'memory', 'isolation', 'background', 'initialPrompt'];
const CLAUDE_OWN_KEYS = ['name', 'description', 'tools', 'disallowedTools', 'model', 'mcpServers', 'permissions'];

/** "sonnet" → "anthropic/claude-sonnet-5-5"; undefined for inherit; an error message for anything else. */
export function mapClaudeModel(model: string): { ref?: string } | { error: string } {
  const m = model.trim();
  if (m === '' || m === 'inherit') return {};
  if (CLAUDE_MODEL_ALIASES[m]) return { ref: CLAUDE_MODEL_ALIASES[m] };
  if (m.includes('/')) return { ref: m };
  if (/^claude-/.test(m)) return { ref: `anthropic/${m}` };
  return { error: `unknown model "${m}": use sonnet, opus, haiku, inherit, a Claude model id (claude-…) or "<provider>/<model-id>"` };
}

/** Parses a Claude Code sub-agent file. The front matter's line numbers are those of the file. */
export function parseClaudeAgent(text: string, file: string): Translated {
  const positions: Record<string, Pos> = {};
  const fail = (message: string, line = 1, field = ''): Translated => ({ result: { errors: [{ file, line, column: 1, field, message }] }, positions });
  const body = text.replace(/^\uFEFF/, '');
  const lines = body.split(/\r?\n/);
  if (lines[0]?.trim() !== '---') {
    return fail('expected YAML front matter at the top of the file: a "---" line, then name, description (and tools, model), then "---"');
  }
  const close = lines.findIndex((l, i) => i > 0 && l.trim() === '---');
  if (close < 0) return fail('front matter is not closed: add a "---" line after it');
  const fmText = lines.slice(1, close).join('\n');
  const instructions = lines.slice(close + 1).join('\n').trim();

  const lc = new LineCounter();
  const doc = parseDocument(fmText, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number | undefined): Pos => {
    if (offset === undefined) return {};
    const { line, col } = lc.linePos(offset);
    return { line: line + 1, column: col }; // +1: the opening "---"
  };
  if (doc.errors.length > 0) {
    return { result: { errors: doc.errors.map((e) => ({ file, ...at(e.pos[0]), field: '', message: `YAML syntax error in front matter: ${e.message}` })) }, positions };
  }
  if (isMap(doc.contents)) {
    for (const pair of doc.contents.items as Pair[]) {
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      positions[key] = at((pair.key as { range?: [number, number, number] } | null)?.range?.[0]);
    }
  } else if (doc.contents !== null) {
    return fail('front matter must be a mapping (name: …, description: …)', 2);
  }
  let fm: Record<string, unknown>;
  try {
    fm = (doc.toJS() ?? {}) as Record<string, unknown>;
  } catch (err) {
    return fail(`cannot read front matter: ${(err as Error).message}`, 2);
  }
  positions.instructions = { line: close + 2, column: 1 };

  const pass = passThroughKeys(['name', 'description', 'tools', 'model', 'instructions', 'permissions', 'goal']);
  const allowed = [...CLAUDE_OWN_KEYS, ...CLAUDE_IGNORED_KEYS, ...pass];
  const problems = unknownKeys(fm, allowed, file, positions);
  const problem = (field: string, message: string) => problems.push({ file, ...(positions[field] ?? { line: 1, column: 1 }), field, message });

  const raw: Record<string, unknown> = {};
  for (const k of pass) if (fm[k] !== undefined) raw[k] = fm[k];
  if (fm.name !== undefined) raw.name = fm.name;
  if (fm.description !== undefined) raw.description = fm.description;
  else problem('description', 'required field is missing (it becomes the tool description MCP clients see)');
  if (instructions) raw.instructions = instructions;

  if (fm.model !== undefined) {
    if (typeof fm.model !== 'string') problem('model', 'expected a string (sonnet, opus, haiku, inherit or "<provider>/<model-id>")');
    else {
      const m = mapClaudeModel(fm.model);
      if ('error' in m) problem('model', m.error);
      else if (m.ref) raw.model = m.ref;
    }
  }

  // tools: Claude tool names (comma-separated or a list). Omitted = read-only tools here (Claude Code
  // would give every tool; granting writes or commands nobody listed is not our default).
  const fs: { read?: boolean; write?: boolean } = {};
  const builtins: string[] = [];
  const net: string[] = [];
  const allow: string[] = [];
  const deny: string[] = [];
  const ask: string[] = [];
  const kinds = new Set<string>();
  const tools = fm.tools === undefined ? ['Read', 'Grep', 'Glob', 'LS'] : stringList(fm.tools);
  if (!tools) problem('tools', 'expected comma-separated Claude Code tool names (e.g. "Read, Grep, Glob") or a list of them');
  for (const t of tools ?? []) {
    if (CLAUDE_READ.includes(t)) {
      fs.read = true;
      kinds.add('Read');
    } else if (CLAUDE_WRITE.includes(t)) {
      fs.write = true;
      kinds.add('Edit');
    } else if (t === 'Bash') {
      // run_command with no command allowed: commands come only from permissions rules (Bash(npm test)).
      builtins.push('run_command');
      kinds.add('Bash');
    } else if (t === 'WebFetch') {
      net.push('*'); // any public host; private addresses stay refused
      kinds.add('WebFetch');
    } else if (CLAUDE_IGNORED_TOOLS.includes(t)) {
      // no counterpart here
    } else if (isMcpToolName(t) || /^[A-Za-z]+\(/.test(t)) {
      const p = parseRule(t);
      if (!p.ok) problem('tools', p.error);
      else {
        allow.push(t);
        kinds.add(p.rule.kind);
      }
    } else {
      const hint = suggest(t, CLAUDE_KNOWN_TOOLS);
      problem('tools', `unknown tool "${t}"${hint ? ` (did you mean "${hint}"?)` : ''}; known: ${[...CLAUDE_READ, ...CLAUDE_WRITE, 'Bash', 'WebFetch'].join(', ')}, mcp__<server>__<tool>`);
    }
  }
  const disallowed = fm.disallowedTools === undefined ? [] : stringList(fm.disallowedTools);
  if (!disallowed) problem('disallowedTools', 'expected comma-separated Claude Code tool names or a list of them');
  for (const t of disallowed ?? []) {
    // Coarser than Claude Code where our kinds are coarser: denying Grep denies every read.
    if (CLAUDE_READ.includes(t)) deny.push('Read');
    else if (CLAUDE_WRITE.includes(t)) deny.push('Edit');
    else if (t === 'Bash' || t === 'WebFetch') deny.push(t);
    else if (CLAUDE_IGNORED_TOOLS.includes(t)) continue;
    else {
      const p = parseRule(t);
      if (p.ok) deny.push(t);
      else problem('disallowedTools', p.error);
    }
  }
  const mcp: string[] = [];
  if (fm.mcpServers !== undefined) {
    const list = Array.isArray(fm.mcpServers) ? fm.mcpServers : [fm.mcpServers];
    for (const s of list) {
      if (typeof s === 'string' && s.trim()) mcp.push(s.trim());
      else problem('mcpServers', 'list the names of servers configured in mcp.json (inline server definitions are not supported here)');
    }
  }
  if (fm.permissions !== undefined) {
    const p = fm.permissions as Record<string, unknown>;
    if (p === null || typeof p !== 'object' || Array.isArray(p)) problem('permissions', 'expected a mapping with allow / ask / deny lists of rules');
    else {
      for (const k of Object.keys(p)) {
        if (!['allow', 'ask', 'deny'].includes(k)) problem('permissions', `unknown key "${k}" (permissions has allow, ask, deny)`);
      }
      for (const [k, list] of [['allow', allow], ['ask', ask], ['deny', deny]] as const) {
        const v = p[k];
        if (v === undefined) continue;
        const items = stringList(v);
        if (!items) {
          problem('permissions', `permissions.${k}: expected a list of rules`);
          continue;
        }
        for (const rule of items) {
          const r = parseRule(rule);
          if (!r.ok) problem('permissions', `permissions.${k}: ${r.error}`);
          // `tools` is the allowlist: a rule may narrow a listed tool or pick its commands, not add a tool.
          else if (k !== 'deny' && ['Read', 'Edit', 'Bash', 'WebFetch'].includes(r.rule.kind) && !kinds.has(r.rule.kind)) {
            problem('permissions', `permissions.${k}: rule "${rule}" needs ${r.rule.kind === 'Read' ? 'Read' : r.rule.kind === 'Edit' ? 'Edit or Write' : r.rule.kind} in tools`);
          } else list.push(rule);
        }
      }
    }
  }
  raw.tools = {
    ...(fs.read || fs.write ? { fs: { ...(fs.read && { read: true }), ...(fs.write && { write: true }) } } : {}),
    ...(net.length ? { net: { allow: net } } : {}),
    ...(builtins.length || mcp.length ? { mcp: [...builtins, ...mcp] } : {}),
  };
  if (allow.length || ask.length || deny.length) {
    raw.permissions = { ...(allow.length && { allow }), ...(ask.length && { ask }), ...(deny.length && { deny }) };
  }
  // Our `tools` is built from the file's tools/mcpServers; everything else keeps the author's key.
  const sourceField = (p: readonly PropertyKey[]): string => (p[0] === 'tools' ? 'tools' : formatPath(p));
  return finish(raw, file, 'claude-md', positions, sourceField, problems);
}

// ---- Codex custom agents (*.toml) ----

const CODEX_OWN_KEYS = ['name', 'description', 'developer_instructions', 'model', 'sandbox_mode', 'mcp_servers', 'permissions'];
const CODEX_IGNORED_KEYS = ['nickname_candidates', 'model_reasoning_effort', 'model_reasoning_summary', 'model_verbosity', 'web_search', 'skills', 'approval_policy'];
const SANDBOX_MODES = ['read-only', 'workspace-write', 'danger-full-access'];

/** "gpt-5-codex" → "openai/gpt-5-codex" (Codex models are OpenAI's); "<provider>/<id>" as written. */
export function mapCodexModel(model: string): string {
  const m = model.trim();
  return m.includes('/') ? m : `openai/${m}`;
}

/** Parses a Codex custom agent file (TOML). */
export function parseCodexAgent(text: string, file: string): Translated {
  const positions = tomlKeyPositions(text);
  let data: Record<string, unknown>;
  try {
    data = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    const e = err as TomlError;
    const msg = (e.message ?? String(err)).split('\n')[0].replace(/^Invalid TOML document: /, '');
    return { result: { errors: [{ file, line: e.line ?? 1, column: e.column ?? 1, field: '', message: `TOML syntax error: ${msg}` }] }, positions };
  }
  const pass = passThroughKeys(['name', 'description', 'instructions', 'model', 'tools', 'permissions', 'goal']);
  const allowed = [...CODEX_OWN_KEYS, ...CODEX_IGNORED_KEYS, ...pass];
  const problems = unknownKeys(data, allowed, file, positions);
  const problem = (field: string, message: string) => problems.push({ file, ...(positions[field] ?? { line: 1, column: 1 }), field, message });

  const raw: Record<string, unknown> = {};
  for (const k of pass) if (data[k] !== undefined) raw[k] = data[k];
  if (data.name !== undefined) raw.name = data.name;
  if (data.description !== undefined) raw.description = data.description;
  else problem('description', 'required field is missing (it becomes the tool description MCP clients see)');
  if (data.developer_instructions === undefined) problem('developer_instructions', 'required field is missing (the agent\'s instructions)');
  else raw.instructions = data.developer_instructions;
  if (data.model !== undefined) {
    if (typeof data.model !== 'string' || !data.model.trim()) problem('model', 'expected a model name such as "gpt-5-codex" or "<provider>/<model-id>"');
    else raw.model = mapCodexModel(data.model);
  }
  // sandbox_mode: read-only (the default here) → read tools; workspace-write / danger-full-access → also
  // write tools. Commands are never implied: they need permissions rules (Bash(npm test)).
  const sandbox = data.sandbox_mode ?? 'read-only';
  if (typeof sandbox !== 'string' || !SANDBOX_MODES.includes(sandbox)) {
    problem('sandbox_mode', `expected one of ${SANDBOX_MODES.map((s) => JSON.stringify(s)).join(', ')}`);
  }
  const write = sandbox === 'workspace-write' || sandbox === 'danger-full-access';
  const mcp: string[] = [];
  if (data.mcp_servers !== undefined) {
    const v = data.mcp_servers;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) mcp.push(...Object.keys(v));
    else if (stringList(v)) mcp.push(...stringList(v)!);
    else problem('mcp_servers', 'expected server names (servers must be configured in mcp.json)');
  }
  const permissions: Record<string, string[]> = {};
  if (data.permissions !== undefined) {
    const p = data.permissions as Record<string, unknown>;
    if (p === null || typeof p !== 'object' || Array.isArray(p)) problem('permissions', 'expected a table with allow / ask / deny lists of rules');
    else {
      for (const k of Object.keys(p)) {
        if (!['allow', 'ask', 'deny'].includes(k)) problem('permissions', `unknown key "${k}" (permissions has allow, ask, deny)`);
        else permissions[k] = (p[k] as string[]) ?? [];
      }
    }
  }
  raw.tools = { fs: { read: true, ...(write && { write: true }) }, ...(mcp.length ? { mcp } : {}) };
  if (Object.keys(permissions).length) raw.permissions = permissions;
  const names: Record<string, string> = { instructions: 'developer_instructions', tools: 'sandbox_mode' };
  const sourceField = (p: readonly PropertyKey[]): string => {
    const top = String(p[0] ?? '');
    if (top === 'tools' && p[1] === 'mcp') return 'mcp_servers';
    if (names[top]) return names[top];
    return formatPath(p);
  };
  positions.tools = positions.sandbox_mode ?? positions.mcp_servers ?? {};
  positions.instructions = positions.developer_instructions ?? {};
  return finish(raw, file, 'codex-toml', positions, sourceField, problems);
}

/** Line/column of each top-level key (`key = …`) and table header (`[key]`, `[key.sub]`) in a TOML text. */
function tomlKeyPositions(text: string): Record<string, Pos> {
  const out: Record<string, Pos> = {};
  let inTable = false;
  let inMultiline: string | null = null;
  text.split(/\r?\n/).forEach((line, i) => {
    if (inMultiline) {
      if (line.includes(inMultiline)) inMultiline = null;
      return;
    }
    const header = /^\s*\[\[?\s*([A-Za-z0-9_-]+)/.exec(line);
    if (header) {
      inTable = true;
      out[header[1]] ??= { line: i + 1, column: line.indexOf(header[1]) + 1 };
      return;
    }
    const kv = /^(\s*)([A-Za-z0-9_-]+|"[^"]*")\s*(?:\.\s*[A-Za-z0-9_-]+\s*)*=\s*(.*)$/.exec(line);
    if (!kv) return;
    const key = kv[2].replace(/^"|"$/g, '');
    if (!inTable) out[key] ??= { line: i + 1, column: kv[1].length + 1 };
    const rest = kv[3];
    for (const q of ['"""', "'''"]) {
      if (rest.startsWith(q) && rest.indexOf(q, 3) < 0) inMultiline = q;
    }
  });
  return out;
}

/** True when a directory exists (for watching only what is there). */
export function dirExists(dir: string): boolean {
  try {
    return existsSync(dir) && statSync(dir).isDirectory();
  } catch {
    return false;
  }
}
