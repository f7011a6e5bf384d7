// Claude Code sub-agents (`*.md`: YAML front matter + Markdown body as the instructions), translated
// into our agent file shape (format-translate.ts).
import { LineCounter, isMap, isScalar, parseDocument } from 'yaml';
import type { Pair } from 'yaml';
import { parseRule } from '../permissions/rules.js';
import { isMcpToolName } from '../contract/tool-names.js';
import { formatPath, suggest } from '../file-errors/positions.js';
import { finish, passThroughKeys, stringList, unknownKeys, type Pos, type Translated } from './format-translate.js';
import { errorMessage } from '../describe-cause.js';

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
    return fail(`cannot read front matter: ${errorMessage(err)}`, 2);
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
