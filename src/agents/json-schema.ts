// JSON Schema checks for agents' output_schema, on ajv (JSON Schema 2020-12, which also reads the
// draft-07 schemas people write by hand): is a schema valid (agent loading, `agents validate`), and
// does an answer match it (the run loop, in a worker). ajv loads on first use: most agents have no
// output_schema, and start-up stays fast.
import { createRequire } from 'node:module';
import type { Ajv2020 as Ajv2020Type, ErrorObject, ValidateFunction } from 'ajv/dist/2020.js';
import { errorMessage } from '../describe-cause.js';

const require = createRequire(import.meta.url);
let ajv: Ajv2020Type | undefined;
const compiled = new Map<string, ValidateFunction>();

function instance(): Ajv2020Type {
  if (!ajv) {
    const { Ajv2020 } = require('ajv/dist/2020') as typeof import('ajv/dist/2020.js');
    // strict: false: keywords ajv does not know (x-…, examples in odd places) are annotations, not errors.
    ajv = new Ajv2020({ strict: false, allErrors: false, validateFormats: false });
  }
  return ajv;
}

/** The schema without `$schema` (providers and ajv's 2020 class both reject a draft-07 URI there). */
export function withoutDialect(schema: Record<string, unknown>): Record<string, unknown> {
  const { $schema: _dialect, ...rest } = schema;
  return rest;
}

/** The first problem of a schema (path inside the schema, message), or undefined when it is valid. */
export function schemaProblem(schema: Record<string, unknown>): { path: string[]; message: string } | undefined {
  const a = instance();
  const s = withoutDialect(schema);
  if (!a.validateSchema(s)) {
    const e = (a.errors ?? [])[0];
    return e ? { path: pointerPath(e.instancePath), message: `not a valid JSON Schema: ${describe(e)}` } : { path: [], message: 'not a valid JSON Schema' };
  }
  try {
    validatorFor(s);
  } catch (err) {
    return { path: [], message: `not a usable JSON Schema: ${errorMessage(err)}` };
  }
  return undefined;
}

/** The first way `value` violates `schema` ("at /items/0/score: must be number"), or undefined. */
export function firstViolation(schema: Record<string, unknown>, value: unknown): string | undefined {
  const validate = validatorFor(withoutDialect(schema));
  if (validate(value)) return undefined;
  const e = (validate.errors ?? [])[0];
  return e ? `at ${e.instancePath || '(root)'}: ${describe(e)}` : 'does not match the schema';
}

function validatorFor(schema: Record<string, unknown>): ValidateFunction {
  const key = JSON.stringify(schema);
  const known = compiled.get(key);
  if (known) return known;
  const v = instance().compile(schema);
  if (compiled.size > 256) compiled.clear(); // agents are few; this only bounds a pathological reload loop
  compiled.set(key, v);
  return v;
}

function describe(e: ErrorObject): string {
  const p = e.params as Record<string, unknown>;
  if (e.keyword === 'additionalProperties') return `must NOT have the property "${String(p.additionalProperty)}"`;
  if (e.keyword === 'required') return `must have the property "${String(p.missingProperty)}"`;
  if (e.keyword === 'enum') return `${e.message} (${JSON.stringify(p.allowedValues)})`;
  return e.message ?? e.keyword;
}

function pointerPath(pointer: string): string[] {
  return pointer
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** An answer as JSON: the text itself, or the inside of a ```json fence around it. Throws when it is not JSON. */
export function parseAnswer(text: string): unknown {
  const t = text.trim();
  const fenced = /^```(?:json)?\s*\n([\s\S]*?)\n?```$/.exec(t);
  return JSON.parse(fenced ? fenced[1] : t);
}

/** Why `text` is not an answer matching `schema`, or undefined when it is. */
export function answerProblem(schema: Record<string, unknown>, text: string): string | undefined {
  let value: unknown;
  try {
    value = parseAnswer(text);
  } catch (err) {
    return `it is not valid JSON (${errorMessage(err)})`;
  }
  return firstViolation(schema, value);
}

/**
 * OpenAI's strict structured output accepts only schemas whose every object lists all its properties
 * in `required` and sets `additionalProperties: false`; for any other schema strict mode is off (the
 * answer is still validated here).
 */
export function strictCompatible(schema: unknown): boolean {
  if (Array.isArray(schema)) return schema.every(strictCompatible);
  if (typeof schema !== 'object' || schema === null) return true;
  const s = schema as Record<string, unknown>;
  if (s.type === 'object' || s.properties !== undefined) {
    const props = Object.keys((s.properties ?? {}) as Record<string, unknown>);
    const required = Array.isArray(s.required) ? (s.required as string[]) : [];
    if (s.additionalProperties !== false || !props.every((p) => required.includes(p))) return false;
  }
  for (const key of ['properties', '$defs', 'definitions']) {
    const group = s[key];
    if (group && typeof group === 'object' && !Object.values(group).every(strictCompatible)) return false;
  }
  for (const key of ['items', 'anyOf', 'allOf', 'oneOf', 'prefixItems']) if (s[key] !== undefined && !strictCompatible(s[key])) return false;
  return true;
}
