// Loads agent YAML files into `AgentDefinition`s, with a file:line:column for every problem.
//
// Synchronous by design: agent files are small and few, the server loads them once at start-up before it
// answers anything, and a hot reload re-runs `loadAgentSources` (formats.ts) and swaps the catalog in one step, so there
// is no interleaving to get wrong. Nothing here throws for a bad file: problems come back as
// `AgentLoadError`s and a broken file never prevents the others from loading.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { AgentFileFormat } from '../config/agents-config.js';
import type { AgentSource } from '../config/agent-sources.js';
import { LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import type { AgentCatalog, AgentDefinition, AgentLoadError } from './definition.js';
import { AgentFileSchema, normalise } from './schema.js';
import { describeSchema, objectKeysAt, schemaAt } from '../file-errors/schema-introspection.js';
import { formatPath, locate, suggest, type Path } from '../file-errors/positions.js';
import { errorMessage } from '../describe-cause.js';

export interface AgentFileResult {
  /** Present only when the file had no errors. */
  agent?: AgentDefinition;
  errors: AgentLoadError[];
}

type Issue = z.core.$ZodIssue;

/** Reads, parses, validates and normalises one agent file. Never throws. */
export function loadAgentFile(file: string): AgentFileResult {
  return loadDetailed(file).result;
}

/** Parses agent YAML text; `file` is used for error messages and as the definition's source. */
export function parseAgentSource(text: string, file: string): AgentFileResult {
  return parseDetailed(text, file).result;
}

interface Detailed {
  result: AgentFileResult;
  /** Position of the value at a path (falls back to the nearest ancestor present in the file). */
  positionOf(path: Path): { line?: number; column?: number };
}

function loadDetailed(file: string): Detailed {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { result: { errors: [{ file, field: '', message: `cannot read file: ${errorMessage(err)}` }] }, positionOf: () => ({}) };
  }
  return parseDetailed(text, file);
}

function parseDetailed(text: string, file: string): Detailed {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const pos = (offset: number | undefined): { line?: number; column?: number } => {
    if (offset === undefined) return {};
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };
  const positionOf = (path: Path) => pos(locate(doc, path).valueOffset);

  if (doc.errors.length > 0) {
    const errors = doc.errors.map((e) => ({ file, ...pos(e.pos[0]), field: '', message: `YAML syntax error: ${e.message}` }));
    return { result: { errors }, positionOf };
  }
  if (doc.contents === null) {
    return {
      result: { errors: [{ file, line: 1, column: 1, field: '', message: 'file is empty: expected a mapping with at least "name" and "description"' }] },
      positionOf,
    };
  }

  let data: unknown;
  try {
    data = doc.toJS();
  } catch (err) {
    // e.g. an alias bomb exceeding maxAliasCount
    return { result: { errors: [{ file, line: 1, column: 1, field: '', message: `cannot read YAML: ${errorMessage(err)}` }] }, positionOf };
  }

  const parsed = AgentFileSchema.safeParse(data);
  if (parsed.success) return { result: { agent: normalise(parsed.data, file), errors: [] }, positionOf };

  const errors: AgentLoadError[] = [];
  for (const { path, issue } of flattenUnions(parsed.error.issues, [])) {
    if (issue.code === 'unrecognized_keys') {
      const allowed = objectKeysAt(path, AgentFileSchema) ?? [];
      for (const key of issue.keys) {
        const keyPath = [...path, key];
        const hint = suggest(key, allowed);
        const tail = hint
          ? ` (did you mean "${hint}"?)`
          : allowed.length > 0
            ? `; allowed keys here: ${allowed.join(', ')}`
            : '';
        errors.push({ file, ...pos(locate(doc, keyPath).keyOffset), field: formatPath(keyPath), message: `unknown key "${key}"${tail}` });
      }
      continue;
    }
    errors.push({ file, ...positionOf(path), field: formatPath(path), message: describeIssue(issue, path, valueAt(data, path)) });
  }
  errors.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
  return { result: { errors }, positionOf };
}

/**
 * Loads every `*.yaml` / `*.yml` file directly in `dir` (not recursive; dot-files are skipped, so editor
 * temp files do not count), in sorted file-name order. Never throws: unreadable or invalid files become
 * errors and the rest still load. When two files declare the same `name`, the first by file name wins
 * and the second gets an error naming both.
 */
export function loadAgentsDir(dir: string): AgentCatalog {
  const agents = new Map<string, AgentDefinition>();
  const errors: AgentLoadError[] = [];

  const listed = listAgentFiles({ dir, format: 'yaml' });
  if (!('files' in listed)) return { agents, errors: listed.error ? [listed.error] : [] };

  for (const file of listed.files) {
    const { result, positionOf } = loadDetailed(file);
    errors.push(...result.errors);
    if (result.agent) addFirstByName(agents, errors, result.agent, positionOf(['name']));
  }
  return { agents, errors };
}

/** Agent files by extension, per format. */
const EXTENSIONS: Record<AgentFileFormat, RegExp> = {
  yaml: /\.ya?ml$/i,
  'claude-md': /\.md$/i,
  'codex-toml': /\.toml$/i,
};

/**
 * The agent files directly in `src.dir` (not recursive; dot-files, and a claude-md README, are skipped), in
 * sorted file-name order; or the directory's one error (none for a missing optional directory).
 */
export function listAgentFiles(src: AgentSource): { files: string[] } | { error?: AgentLoadError } {
  let entries: string[];
  try {
    if (!statSync(src.dir).isDirectory()) return { error: { file: src.dir, field: '', message: 'agents path is not a directory' } };
    entries = readdirSync(src.dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && src.optional) return {};
    const message = code === 'ENOENT' ? 'agents directory not found' : `cannot read agents directory: ${errorMessage(err)}`;
    return { error: { file: src.dir, field: '', message } };
  }
  const files = entries
    .filter((n) => EXTENSIONS[src.format].test(n) && !n.startsWith('.') && !(src.format === 'claude-md' && /^readme\.md$/i.test(n)))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((n) => join(src.dir, n))
    .filter((f) => {
      try {
        return statSync(f).isFile();
      } catch {
        return false; // a dangling symlink, or removed meanwhile
      }
    });
  return { files };
}

/**
 * Adds `agent` unless its name is taken: the first file (in load order) wins, and the later one gets an
 * error naming both files. Shared by every loader so the rule and its message stay one.
 */
export function addFirstByName(
  agents: Map<string, AgentDefinition>,
  errors: AgentLoadError[],
  agent: AgentDefinition,
  namePosition: { line?: number; column?: number },
): void {
  const first = agents.get(agent.name);
  if (!first) {
    agents.set(agent.name, agent);
    return;
  }
  errors.push({
    file: agent.source.file,
    ...namePosition,
    field: 'name',
    message: `duplicate agent name "${agent.name}": already defined in ${first.source.file}; this file is ignored`,
  });
}

// ---- zod issues → human messages ----

/**
 * Replaces union failures by the issues of the branch the value was evidently meant for (the one that got
 * past the type check), so `artifacts[1].name` is reported instead of "invalid input" at `artifacts[1]`.
 * When every branch failed on the type itself, the union issue is kept and described as "A or B".
 */
function flattenUnions(issues: readonly Issue[], prefix: Path): { path: Path; issue: Issue }[] {
  const out: { path: Path; issue: Issue }[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'invalid_union' && issue.errors.length > 0) {
      const typeOnly = (branch: Issue[]) =>
        branch.every((i) => i.path.length === 0 && (i.code === 'invalid_type' || i.code === 'invalid_value'));
      const meant = issue.errors.filter((branch) => !typeOnly(branch));
      if (meant.length > 0) {
        const best = meant.reduce((a, b) => (b.length < a.length ? b : a));
        out.push(...flattenUnions(best, path));
        continue;
      }
    }
    out.push({ path, issue });
  }
  return out;
}

function describeIssue(issue: Issue, path: Path, value: unknown): string {
  const schema = schemaAt(path, AgentFileSchema);
  const expected = schema ? describeSchema(schema) : undefined;
  switch (issue.code) {
    case 'invalid_type':
    case 'invalid_union': {
      const want = issue.code === 'invalid_type' && issue.expected === 'int' ? 'integer' : (expected ?? (issue.code === 'invalid_type' ? issue.expected : 'a different value'));
      if (value === undefined) return `required field is missing (expected ${want})`;
      return `expected ${want}, got ${describeValue(value)}`;
    }
    case 'invalid_value': {
      const want = issue.values.map((v) => JSON.stringify(v)).join(' or ');
      if (value === undefined) return `required field is missing (expected ${want})`;
      return `expected ${issue.values.length > 1 ? 'one of ' : ''}${want}, got ${describeValue(value)}`;
    }
    case 'too_small': {
      const min = String(issue.minimum);
      if (issue.origin === 'string') return Number(issue.minimum) <= 1 ? 'must not be empty' : `must be at least ${min} characters long`;
      if (issue.origin === 'array') return `must have at least ${min} item${min === '1' ? '' : 's'}`;
      return `must be ${issue.inclusive === false ? 'greater than' : 'at least'} ${min}, got ${describeValue(value)}`;
    }
    case 'too_big': {
      const max = String(issue.maximum);
      if (issue.origin === 'string') return `must be at most ${max} characters long`;
      if (issue.origin === 'array') return `must have at most ${max} items`;
      return `must be ${issue.inclusive === false ? 'less than' : 'at most'} ${max}, got ${describeValue(value)}`;
    }
    case 'invalid_format':
      // Our formats carry their own human message (see schema.ts); fall back to zod's for any other.
      return issue.message;
    case 'not_multiple_of':
      return `must be a multiple of ${issue.divisor}, got ${describeValue(value)}`;
    default:
      return issue.message;
  }
}

function describeValue(v: unknown): string {
  if (v === null) return 'an empty value';
  if (Array.isArray(v)) return 'a list';
  switch (typeof v) {
    case 'string': {
      const s = v.length > 40 ? `${v.slice(0, 37)}...` : v;
      return `string ${JSON.stringify(s)}`;
    }
    case 'number':
      return Number.isInteger(v) ? `integer ${v}` : `number ${v}`;
    case 'boolean':
      return `boolean ${v}`;
    case 'object':
      return 'a mapping';
    default:
      return typeof v;
  }
}

function valueAt(data: unknown, path: Path): unknown {
  let v = data;
  for (const seg of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[seg];
  }
  return v;
}
