// Parsing of Claude-Code-style permission rule strings. Grammar:
//   Read | Read(<path glob>)        read_file, list_dir, search_files          (glob.ts)
//   Edit | Edit(<path glob>)        write_file, edit_file                      (glob.ts)
//   Bash | Bash(<argv pattern>)     run_command                                (command.ts)
//   WebFetch | WebFetch(domain:<h>) fetch_url                                  (url.ts)
//   Agent | Agent(<name glob>)      delegation to another agent (tool agent__<name>)
//   mcp__<server>__<tool glob>      downstream MCP tools; `mcp__<server>` alone = every tool of it
// The bare form (no parentheses) means "any". Kinds are case-sensitive, as in Claude Code.
import { compileNameGlob, compilePathGlob, type PathGlob } from '../glob.js';
import { parseCommandPattern, type CommandPattern } from './command.js';
import { parseHostPattern, type HostPattern } from './url.js';
import { MCP_TOOL_PREFIX, isMcpToolName } from '../contract/tool-names.js';

export type PathKind = 'Read' | 'Edit';
export type RuleKind = PathKind | 'Bash' | 'WebFetch' | 'Agent' | 'mcp';

export type Rule =
  | { kind: PathKind; source: string; glob: PathGlob | null }
  | { kind: 'Bash'; source: string; command: CommandPattern | null }
  | { kind: 'WebFetch'; source: string; host: HostPattern }
  | { kind: 'Agent'; source: string; name: RegExp | null }
  | { kind: 'mcp'; source: string; name: RegExp };

export type ParseResult = { ok: true; rule: Rule } | { ok: false; error: string };

const KINDS = ['Read', 'Edit', 'Bash', 'WebFetch', 'Agent'] as const;
type ParenKind = (typeof KINDS)[number];

/** Common misspellings → the kind meant, for the error message. */
const HINTS: Record<string, string> = {
  read_file: 'Read', list_dir: 'Read', search_files: 'Read', Glob: 'Read', Grep: 'Read', LS: 'Read',
  write_file: 'Edit', edit_file: 'Edit', Write: 'Edit', MultiEdit: 'Edit', NotebookEdit: 'Edit',
  run_command: 'Bash', Shell: 'Bash', fetch_url: 'WebFetch', Fetch: 'WebFetch', Task: 'Agent',
};

const MCP_RE = /^mcp__[A-Za-z0-9_.*-]+$/;
const AGENT_GLOB_RE = /^[A-Za-z0-9_*-]+$/;

function parseUncached(input: string): ParseResult {
  const fail = (msg: string): ParseResult => ({ ok: false, error: `invalid permission rule ${JSON.stringify(input)}: ${msg}` });
  const s = input.trim();
  if (s === '') return fail('empty rule');

  if (isMcpToolName(s)) {
    const rest = s.slice(MCP_TOOL_PREFIX.length);
    if (rest === '' || rest.startsWith('_')) return fail(`missing server name after "${MCP_TOOL_PREFIX}"`);
    if (!MCP_RE.test(s)) return fail('MCP rules look like mcp__<server>__<tool>, using A-Z a-z 0-9 _ . - and * only');
    // `mcp__github` alone means every tool of that server (as in Claude Code).
    const full = rest.includes('__') ? s : `${s}__*`;
    return { ok: true, rule: { kind: 'mcp', source: s, name: compileNameGlob(full) } };
  }

  const open = s.indexOf('(');
  const kindText = open < 0 ? s : s.slice(0, open);
  if (open < 0 && s.includes(')')) return fail('")" without "("');
  if (!(KINDS as readonly string[]).includes(kindText)) {
    const ci = KINDS.find((k) => k.toLowerCase() === kindText.toLowerCase()) ?? HINTS[kindText];
    return fail(
      `unknown tool "${kindText}"${ci ? ` (did you mean ${ci}?)` : ''}; expected Read, Edit, Bash, WebFetch, Agent or mcp__<server>__<tool>`,
    );
  }
  const kind = kindText as ParenKind;
  if (open < 0) {
    // Bare kind: any.
    if (kind === 'Read' || kind === 'Edit') return { ok: true, rule: { kind, source: s, glob: null } };
    if (kind === 'Bash') return { ok: true, rule: { kind, source: s, command: null } };
    if (kind === 'WebFetch') return { ok: true, rule: { kind, source: s, host: { type: 'any' } } };
    return { ok: true, rule: { kind, source: s, name: null } };
  }
  if (!s.endsWith(')')) return fail('missing ")"');
  const spec = s.slice(open + 1, -1).trim();
  if (spec === '') return fail(`empty "()"; write ${kind} without parentheses to mean any`);

  switch (kind) {
    case 'Read':
    case 'Edit': {
      const g = compilePathGlob(spec);
      return g.ok ? { ok: true, rule: { kind, source: s, glob: g.glob } } : fail(g.error);
    }
    case 'Bash': {
      const c = parseCommandPattern(spec);
      return c.ok ? { ok: true, rule: { kind, source: s, command: c.pattern } } : fail(c.error);
    }
    case 'WebFetch': {
      const h = parseHostPattern(spec);
      return h.ok ? { ok: true, rule: { kind, source: s, host: h.pattern } } : fail(h.error);
    }
    case 'Agent': {
      if (!AGENT_GLOB_RE.test(spec)) return fail('agent names use A-Z a-z 0-9 _ - (and * as a wildcard)');
      return { ok: true, rule: { kind, source: s, name: spec === '*' ? null : compileNameGlob(spec) } };
    }
  }
}

// Rules are few and come from agent files, never from the model; the cap only guards against misuse.
const cache = new Map<string, ParseResult>();
const CACHE_MAX = 10_000;

/** Parse one rule string. Errors read `invalid permission rule "Read(": missing ")"`. */
export function parseRule(s: string): ParseResult {
  let r = cache.get(s);
  if (!r) {
    r = typeof s === 'string' ? parseUncached(s) : { ok: false, error: `invalid permission rule: expected a string, got ${typeof s}` };
    if (cache.size >= CACHE_MAX) cache.clear();
    cache.set(s, r);
  }
  return r;
}

/** Every invalid rule in a list, by index, for the agent loader to report with file/line. */
export function validateRules(rules: readonly string[]): { index: number; message: string }[] {
  const out: { index: number; message: string }[] = [];
  rules.forEach((r, index) => {
    const p = parseRule(r);
    if (!p.ok) out.push({ index, message: p.error });
  });
  return out;
}
