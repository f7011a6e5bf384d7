// What the other agent file formats share: validate a translated file with our schema, map errors back
// to the author's own keys and positions, and normalise it like a YAML agent.
import type { AgentFileFormat } from '../config/agents-config.js';
import type { AgentDefinition, AgentLoadError } from './definition.js';
import type { AgentFileResult } from './loader.js';
import { AgentFileSchema, normalise, type AgentFile } from './schema.js';
import { suggest } from '../file-errors/positions.js';
import { objectKeysAt } from '../file-errors/schema-introspection.js';

export type Pos = { line?: number; column?: number };

export interface Translated {
  result: AgentFileResult;
  /** Where each top-level key of the source file is written. */
  positions: Record<string, Pos>;
}

/** Keys of our YAML format that other formats may also carry, unchanged (max_turns, timeout_s, budget, …). */
export function passThroughKeys(exclude: readonly string[]): string[] {
  return (objectKeysAt([], AgentFileSchema) ?? []).filter((k) => !exclude.includes(k));
}

/**
 * Validates a translated file and normalises it. `sourceField` maps a path in our schema back to the key
 * the author wrote (for messages and positions).
 */
export function finish(
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
export function unknownKeys(
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

export function stringList(v: unknown): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v.split(',').map((s) => s.trim()).filter(Boolean);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.map((s) => s.trim()).filter(Boolean);
  return undefined;
}
