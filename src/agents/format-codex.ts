// Codex custom agents (`*.toml`: name, description, developer_instructions, model, …), translated into
// our agent file shape (format-translate.ts).
import { parse as parseToml, TomlError } from 'smol-toml';
import { formatPath } from '../file-errors/positions.js';
import { finish, passThroughKeys, stringList, unknownKeys, type Pos, type Translated } from './format-translate.js';

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
