// Zod schema introspection for error messages about user files (agent files, mcp.json): the keys a
// schema allows at a path (for "did you mean") and what it accepts, derived from the schema itself,
// never a second list. A leaf of its own: the config and the agent loaders both use it.
import type { z } from 'zod';

export type AnySchema = z.core.$ZodType;

function unwrap(s: AnySchema): AnySchema {
  for (;;) {
    const def = s._zod.def as { type: string; innerType?: AnySchema; in?: AnySchema };
    if ((def.type === 'optional' || def.type === 'default' || def.type === 'nullable' || def.type === 'prefault') && def.innerType) {
      s = def.innerType;
    } else if (def.type === 'pipe' && def.in) {
      s = def.in;
    } else {
      return s;
    }
  }
}

function shapeOf(s: AnySchema): Record<string, AnySchema> | undefined {
  const def = s._zod.def as { type: string; shape?: Record<string, AnySchema> };
  return def.type === 'object' ? def.shape : undefined;
}

/**
 * The sub-schema at a data path (object keys and array indices), or undefined if the path leaves the
 * schema. Through a union it follows the first option that can contain the next path segment.
 */
export function schemaAt(path: readonly PropertyKey[], root: AnySchema): AnySchema | undefined {
  let s: AnySchema | undefined = unwrap(root);
  for (const seg of path) {
    if (!s) return undefined;
    s = step(s, seg);
  }
  return s;
}

function step(s: AnySchema, seg: PropertyKey): AnySchema | undefined {
  const def = s._zod.def as {
    type: string;
    element?: AnySchema;
    options?: AnySchema[];
    valueType?: AnySchema;
  };
  if (def.type === 'union' && def.options) {
    for (const opt of def.options) {
      const next = step(unwrap(opt), seg);
      if (next) return next;
    }
    return undefined;
  }
  if (typeof seg === 'number') return def.type === 'array' && def.element ? unwrap(def.element) : undefined;
  const shape = shapeOf(s);
  if (shape) return shape[String(seg)] ? unwrap(shape[String(seg)]) : undefined;
  if (def.type === 'record' && def.valueType) return unwrap(def.valueType);
  return undefined;
}

/** The keys the object schema at `path` allows, in declaration order (undefined if no object is there). */
export function objectKeysAt(path: readonly PropertyKey[], root: AnySchema): string[] | undefined {
  const s = schemaAt(path, root);
  if (!s) return undefined;
  const def = s._zod.def as { type: string; options?: AnySchema[] };
  if (def.type === 'union' && def.options) {
    for (const opt of def.options) {
      const shape = shapeOf(unwrap(opt));
      if (shape) return Object.keys(shape);
    }
    return undefined;
  }
  const shape = shapeOf(s);
  return shape ? Object.keys(shape) : undefined;
}

/** A short human description of what a schema accepts: "boolean", "list of strings", "string or mapping". */
export function describeSchema(s: AnySchema): string {
  s = unwrap(s);
  const def = s._zod.def as {
    type: string;
    element?: AnySchema;
    options?: AnySchema[];
    values?: unknown[];
    entries?: Record<string, unknown>;
  };
  switch (def.type) {
    case 'string':
      return 'string';
    case 'number':
      return (s as unknown as { isInt?: boolean }).isInt ? 'integer' : 'number';
    case 'boolean':
      return 'boolean';
    case 'object':
    case 'record':
      return 'mapping';
    case 'array':
      return `list of ${plural(describeSchema(def.element!))}`;
    case 'union':
      return (def.options ?? []).map(describeSchema).join(' or ');
    case 'literal':
      return (def.values ?? []).map((v) => JSON.stringify(v)).join(' or ');
    case 'enum':
      return `one of ${Object.values(def.entries ?? {})
        .map((v) => JSON.stringify(v))
        .join(', ')}`;
    default:
      return def.type;
  }
}

function plural(desc: string): string {
  return desc
    .split(' or ')
    .map((d) => (/^(string|number|integer|boolean|mapping)$/.test(d) ? `${d}s` : d))
    .join(' or ');
}
