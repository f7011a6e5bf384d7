// A built-in tool is declared once: its input as a zod schema (which validates the model's arguments
// and, through z.toJSONSchema, becomes the JSON Schema the model is offered) and a run function that
// receives the parsed arguments. defineTool is also the one place where an unexpected exception of a
// built-in tool becomes an outcome (`<tool>: internal error: …`); expected failures are returned
// (outcome.ts).
import { z } from 'zod';
import type { JsonSchema } from '../contract/json-schema.js';
import type { ToolSpec } from '../contract/tool.js';
import { fail } from './outcome.js';
import type { BuiltinTool, ToolContext } from './types.js';
import type { ToolOutcome } from '../contract/tool.js';
import { errorMessage } from '../describe-cause.js';

/** A tool's input: a strict object (unknown arguments are an error), possibly with cross-field refinements. */
export type ToolInput = z.ZodObject<z.ZodRawShape, z.core.$strict>;

export interface ToolDefinition<I extends ToolInput> {
  name: string;
  description: string;
  /** Builds the input schema; called once, on the tool's first use (zod schemas cost to build at start-up). */
  input: () => I;
  run(args: z.output<I>, ctx: ToolContext): Promise<ToolOutcome>;
}

export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

const ARTICLE: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'a boolean',
  array: 'an array',
  object: 'an object',
};

/** `"path"` for a top-level argument, `argv[1]` below it (the model sees the names it sent). */
function where(p: readonly PropertyKey[]): string {
  if (p.length === 1) return JSON.stringify(String(p[0]));
  return p.map((k, i) => (i === 0 ? String(k) : typeof k === 'number' ? `[${k}]` : `.${String(k)}`)).join('');
}

/**
 * Wording for issues the schema gives no message of its own for. Schema-level `error`s win over this
 * (zod's precedence), so a field with a more helpful sentence declares it next to the field.
 */
function genericMessage(iss: z.core.$ZodRawIssue, expectedKeys: readonly string[]): string {
  const at = where(iss.path ?? []);
  const input = iss.input;
  switch (iss.code) {
    case 'invalid_type': {
      if ((iss.path ?? []).length === 0) return `arguments must be a JSON object, got ${typeName(input)}`;
      const want = ARTICLE[iss.expected] ?? iss.expected;
      if (input === undefined && iss.path?.length === 1) return `missing required argument ${at} (${want})`;
      const got = iss.expected === 'int' && typeof input === 'number' ? String(input) : typeName(input);
      return `${at} must be ${want}, got ${got}`;
    }
    case 'unrecognized_keys':
      return `unknown argument "${iss.keys[0]}" (expected: ${expectedKeys.join(', ')})`;
    case 'too_small':
      if (iss.origin === 'number' || iss.origin === 'int') {
        return `${at} must be ${iss.inclusive === false ? '>' : '>='} ${String(iss.minimum)}, got ${String(input)}`;
      }
      return Number(iss.minimum) === 1 ? `${at} must not be empty` : `${at} must have at least ${String(iss.minimum)} ${iss.origin === 'array' ? 'elements' : 'characters'}`;
    case 'too_big':
      if (iss.origin === 'number' || iss.origin === 'int') return `${at} must be at most ${String(iss.maximum)}, got ${String(input)}`;
      return `${at} must have at most ${String(iss.maximum)} ${iss.origin === 'array' ? 'elements' : 'characters'}`;
    case 'invalid_value':
      return `${at} must be one of ${iss.values.map((v) => JSON.stringify(v)).join(', ')}, got ${JSON.stringify(input)}`;
    default:
      return `${at} is invalid`;
  }
}

/**
 * JSON Schema as the tools offered it before zod: no `$schema` key (some OpenAI-compatible servers
 * refuse unknown top-level keys), no ±2^53 bounds that zod adds to integers, `required` always present
 * (OpenAI's function format expects it).
 */
function offeredSchema(input: ToolInput): JsonSchema {
  const schema = z.toJSONSchema(input, {
    io: 'input',
    override: ({ jsonSchema }) => {
      if (jsonSchema.maximum === Number.MAX_SAFE_INTEGER) delete jsonSchema.maximum;
      if (jsonSchema.minimum === Number.MIN_SAFE_INTEGER) delete jsonSchema.minimum;
    },
  }) as JsonSchema;
  delete schema.$schema;
  schema.required ??= [];
  return schema;
}

export function defineTool<I extends ToolInput>(def: ToolDefinition<I>): BuiltinTool {
  let built: { input: I; keys: string[]; optional: Set<string> } | undefined;
  const schema = (): NonNullable<typeof built> => {
    if (built) return built;
    const input = def.input();
    const keys = Object.keys(input.shape);
    // Some models send null for an unset optional argument: that counts as absent.
    const optional = new Set(keys.filter((k) => z.safeParse(input.shape[k], undefined).success));
    return (built = { input, keys, optional });
  };
  let spec: ToolSpec | undefined;
  return {
    // Derived on first use (when a run is offered the tool), not at start-up.
    get spec(): ToolSpec {
      return (spec ??= { name: def.name, description: def.description, inputSchema: offeredSchema(schema().input) });
    },
    async run(raw, ctx) {
      const { input, keys, optional } = schema();
      let args: unknown = raw;
      if (typeof raw === 'object' && raw !== null && !Array.isArray(raw) && Object.values(raw).includes(null)) {
        args = Object.fromEntries(Object.entries(raw).filter(([k, v]) => !(v === null && optional.has(k))));
      }
      const parsed = input.safeParse(args, { error: (iss) => genericMessage(iss, keys), reportInput: true });
      if (!parsed.success) {
        const issues = parsed.error.issues;
        // Unknown arguments first: they usually explain the other complaints (a misspelt name).
        const first = issues.find((i) => i.code === 'unrecognized_keys') ?? issues[0];
        return fail(`${def.name}: ${first.message}`);
      }
      try {
        return await def.run(parsed.data, ctx);
      } catch (e) {
        return fail(`${def.name}: internal error: ${errorMessage(e)}`);
      }
    },
  };
}
