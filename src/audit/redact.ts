// Secret redaction for everything that reaches the audit log (and anything else that wants it).
// Three layers: the literal values of secrets this process holds (catches keys of any shape), known
// secret shapes (catches keys we were never told about, e.g. in tool output), and object fields whose
// name says "secret". All string matching runs through ONE precompiled regex per Redactor, so
// redacting every event costs a single scan per string.

export const REDACTED = '[REDACTED]';

/** Env var names whose values are treated as secrets. */
const SECRET_ENV_NAME = /(?:_KEY|_TOKEN|_SECRET)$|PASSWORD|^AUTH/i;
const MIN_LITERAL_LENGTH = 8;
/** Token-like literals are also matched by this many leading chars, to catch truncated copies. */
const LITERAL_PREFIX = 16;

/** Field names (lower-cased) whose values are always redacted, whatever they look like. */
const SECRET_FIELDS = new Set([
  'apikey',
  'api_key',
  'api-key',
  'x-api-key',
  'authorization',
  'proxy-authorization',
  'token',
  'password',
  'passwd',
  'secret',
  'client_secret',
  'cookie',
  'set-cookie',
  'private_key',
]);

export function isSecretFieldName(name: string): boolean {
  const n = name.toLowerCase();
  // "*token" catches access_token, refreshToken, x-auth-token — but not input_tokens / max_tokens.
  return SECRET_FIELDS.has(n) || n.endsWith('token') || n.endsWith('password');
}

/** Case-insensitive literal for use inside a regex without the `i` flag (which would apply to all rules). */
const ci = (word: string) => word.replace(/[a-z]/gi, (c) => `[${c.toLowerCase()}${c.toUpperCase()}]`);

export interface SecretRule {
  label: string;
  source: string;
  /**
   * Builds the replacement from the rule's own capture groups (m[0] is the whole match). Rules that
   * keep a harmless prefix ("Bearer ", "user:") capture it as group 1.
   */
  render?: (m: string[], replacement: string) => string;
}

const keepPrefix = (m: string[], r: string) => m[1] + r;

// Quantifiers that can run along a long line are bounded, so no input makes the scan quadratic.
// Boundaries: a secret must not be glued to a preceding word char, so "task-…" never matches "sk-".
const B = '(?<![A-Za-z0-9_-])';

/** Known secret shapes. Order matters only where two rules can match at the same position. */
export const SECRET_RULES: readonly SecretRule[] = [
  {
    label: 'private-key',
    // Truncated blocks (no END line) are redacted to the end of the base64 body (raw or JSON-escaped).
    source: '-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----(?:[\\s\\S]{0,20000}?-----END[A-Z0-9 ]*PRIVATE KEY-----|[A-Za-z0-9+/=\\s\\\\]*)',
  },
  { label: 'anthropic-key', source: `${B}sk-ant-[A-Za-z0-9_-]{8,}` },
  { label: 'openai-key', source: `${B}sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{8,}` },
  // Generic sk-… keys: 20+ chars with at least one digit, so prose like "sk-learn-style" stays.
  { label: 'openai-key', source: `${B}sk-(?=[A-Za-z_-]{0,100}[0-9])[A-Za-z0-9_-]{20,}` },
  { label: 'github-token', source: `${B}(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})` },
  { label: 'aws-access-key', source: '(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])' },
  { label: 'google-api-key', source: `${B}AIza[0-9A-Za-z_-]{35}` },
  { label: 'slack-token', source: `${B}xox[abprs]-[A-Za-z0-9-]{10,}` },
  { label: 'jwt', source: `${B}eyJ[A-Za-z0-9_-]{5,}\\.[A-Za-z0-9_-]{5,}\\.[A-Za-z0-9_-]*` },
  { label: 'bearer', source: `\\b(${ci('bearer')}\\s+)[A-Za-z0-9._~+/=-]{8,}`, render: keepPrefix },
  // scheme://user:PASSWORD@host → keep scheme and user.
  { label: 'url-password', source: '\\b([A-Za-z][A-Za-z0-9+.-]{0,30}://[^\\s:/@]{1,256}:)[^\\s/@]{1,256}(?=@)', render: keepPrefix },
  // KEY=value / "api_key": "value" inside free text (a .env file or JSON read by a tool).
  {
    label: 'secret',
    source:
      '(?<![A-Za-z0-9])((?:[A-Z0-9_]{0,60}_)?(?:API_KEY|SECRET_KEY|ACCESS_KEY|TOKEN|SECRET|PASSWORD|PASSWD)\\s*[=:]\\s*["\']?)[^\\s"\'`,;]{8,}',
    render: keepPrefix,
  },
  {
    label: 'secret',
    source: `("(?:${['api_key', 'apikey', 'x-api-key', 'authorization', 'password', 'secret', 'client_secret', 'access_token', 'refresh_token', 'token'].map(ci).join('|')})"\\s*:\\s*")(?:[^"\\\\]|\\\\.){4,}(?=")`,
    render: keepPrefix,
  },
];

const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');

export interface RedactorOptions {
  /** Environment to harvest secret values from (default: process.env). Pass {} to skip. */
  env?: NodeJS.ProcessEnv | Record<string, string | undefined>;
  /** Further literal secrets, e.g. API keys from the config file. */
  secrets?: Iterable<string | undefined | null>;
  /** Label the pattern matches ("[REDACTED:anthropic-key]"); default true. Literals are always "[REDACTED]". */
  labels?: boolean;
}

const MAX_DEPTH = 64;

export class Redactor {
  private readonly re: RegExp;
  /** For each top-level alternative: its first group index and its rule (undefined = literal). */
  private readonly slots: { group: number; groups: number; rule?: SecretRule }[] = [];
  private readonly labels: boolean;
  readonly literalCount: number;

  constructor(opts: RedactorOptions = {}) {
    this.labels = opts.labels ?? true;
    const literals = new Set<string>();
    for (const [name, value] of Object.entries(opts.env ?? process.env)) {
      if (value && value.length >= MIN_LITERAL_LENGTH && SECRET_ENV_NAME.test(name)) literals.add(value);
    }
    for (const s of opts.secrets ?? []) if (s && s.length >= MIN_LITERAL_LENGTH) literals.add(s);
    this.literalCount = literals.size;

    const alternatives: string[] = [];
    let group = 1;
    const add = (source: string, rule?: SecretRule) => {
      const groups = countGroups(source);
      this.slots.push({ group, groups, rule });
      alternatives.push(`(${source})`);
      group += 1 + groups;
    };
    // Literals first: they are exact, so they win over a shape rule starting at the same position.
    // Longest first, so a secret that contains another is replaced whole.
    const lits = [...literals].sort((a, b) => b.length - a.length).map(literalSource);
    if (lits.length) add(lits.join('|'));
    for (const rule of SECRET_RULES) add(rule.source, rule);
    this.re = new RegExp(alternatives.join('|'), 'g');
  }

  /** A Redactor over process.env plus the given literal secrets. */
  static fromEnv(secrets: Iterable<string | undefined | null> = []): Redactor {
    return new Redactor({ secrets });
  }

  redactString(s: string): string {
    // Every rule and literal needs at least 8 chars except url-password, which needs "a://b:c@".
    if (s.length < 8) return s;
    return s.replace(this.re, (...args: unknown[]) => {
      const match = args[0] as string;
      for (const slot of this.slots) {
        if (args[slot.group] === undefined) continue;
        const rule = slot.rule;
        if (!rule) return REDACTED;
        const replacement = this.labels ? `[REDACTED:${rule.label}]` : REDACTED;
        if (!rule.render) return replacement;
        const m = [match, ...(args.slice(slot.group + 1, slot.group + 1 + slot.groups) as string[])];
        return rule.render(m, replacement);
      }
      return REDACTED;
    });
  }

  /** Deep copy of `value` with secrets replaced. Never mutates the input; cycles become "[Circular]". */
  redact(value: unknown): unknown {
    return this.walk(value, new WeakSet(), 0);
  }

  /**
   * JSON.stringify(redact(value)) in one pass, without the deep copy: the audit log's hot path. Plain
   * data takes the fast path; anything it cannot express the same way (cycles, depth, BigInt, Map, Set,
   * binary) goes through redact() first, so the output is always the same.
   */
  redactToJson(value: unknown): string {
    let plain = true;
    let json: string | undefined;
    try {
      json = JSON.stringify(value, (key, v: unknown) => {
        if (typeof v === 'string') return key !== '' && isSecretFieldName(key) ? REDACTED : this.redactString(v);
        if (v === null || typeof v !== 'object') {
          if (typeof v === 'bigint') plain = false;
          return key !== '' && v !== undefined && v !== null && typeof v !== 'boolean' && isSecretFieldName(key) ? REDACTED : v;
        }
        if (key !== '' && isSecretFieldName(key)) return REDACTED;
        if (v instanceof Error) return { name: v.name, message: this.redactString(v.message) };
        if (v instanceof Map || v instanceof Set || ArrayBuffer.isView(v)) plain = false;
        return v;
      });
    } catch {
      plain = false; // a cycle, or nesting too deep for the stack
    }
    if (plain && json !== undefined) return json;
    return JSON.stringify(this.redact(value), (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) ?? 'null';
  }

  private walk(value: unknown, seen: WeakSet<object>, depth: number): unknown {
    if (typeof value === 'string') return this.redactString(value);
    if (value === null || typeof value !== 'object') return value;
    if (depth >= MAX_DEPTH) return '[Truncated]';
    if (seen.has(value)) return '[Circular]';
    seen.add(value);
    try {
      if (Array.isArray(value)) return value.map((v) => this.walk(v, seen, depth + 1));
      if (value instanceof Date) return value.toISOString();
      if (value instanceof Error) {
        return { name: value.name, message: this.redactString(value.message) };
      }
      if (ArrayBuffer.isView(value)) return `[binary ${value.byteLength} bytes]`;
      if (value instanceof Map) return this.walk(Object.fromEntries(value), seen, depth);
      if (value instanceof Set) return this.walk([...value], seen, depth);
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) {
        out[k] = isSecretFieldName(k) && v !== null && v !== undefined && typeof v !== 'boolean' ? REDACTED : this.walk(v, seen, depth + 1);
      }
      return out;
    } finally {
      // Only ancestors count as cycles; the same object twice in siblings is fine.
      seen.delete(value);
    }
  }
}

/**
 * A literal as a regex. Token-like values (no spaces or path chars) are matched by their first
 * LITERAL_PREFIX chars plus any token continuation, so truncated copies ("sk-abc…") are caught too.
 */
function literalSource(lit: string): string {
  if (lit.length >= LITERAL_PREFIX + 4 && /^[A-Za-z0-9_.+=~-]+$/.test(lit)) {
    return `${escapeRegex(lit.slice(0, LITERAL_PREFIX))}[A-Za-z0-9_.+=~-]*`;
  }
  return escapeRegex(lit);
}

/** Number of capturing groups in a regex source. */
function countGroups(source: string): number {
  return new RegExp(`${source}|`).exec('')!.length - 1;
}
