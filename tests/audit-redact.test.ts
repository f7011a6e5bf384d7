// Redaction: every secret shape, literal env values anywhere in a string, structured fields, and the
// non-secrets that must come through untouched.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { digest, canonicalJson } from '../src/audit/events.js';
import { REDACTED, Redactor, isSecretFieldName } from '../src/audit/redact.js';

const FAKE_KEY = 'sk-fake-1234567890abcdef';
process.env.DMCP_TEST_API_KEY = FAKE_KEY;

// Built from pieces so this file itself does not look like it holds real keys.
const shapes: [label: string, secret: string][] = [
  ['anthropic-key', 'sk-ant-' + 'api03-' + 'Abc123_def456-GHI789jkl012mno345pqr678'],
  ['openai-key', 'sk-proj-' + 'Abc123def456GHI789jkl012'],
  ['openai-key', 'sk-' + 'Abc123def456GHI789jkl012mno345pqr678stu9'],
  ['github-token', 'ghp_' + 'A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8'],
  ['github-token', 'gho_' + 'A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8'],
  ['github-token', 'github_pat_' + '11ABCDEFG0123456789_abcdefghijklmnopqrstuv'],
  ['aws-access-key', 'AKIA' + 'IOSFODNN7EXAMPLE'],
  ['google-api-key', 'AIza' + 'SyA-1234567890abcdefghijklmnopqrstu'],
  ['slack-token', 'xoxb-' + '1234567890-0987654321-AbCdEfGhIjKl'],
  ['jwt', 'eyJ' + 'hbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c'],
];

test('every known secret shape is redacted with its label, surrounding text kept', () => {
  const r = new Redactor({ env: {} });
  for (const [label, secret] of shapes) {
    const out = r.redactString(`before ${secret} after`);
    assert.equal(out, `before [REDACTED:${label}] after`, `${label}: ${secret}`);
  }
});

test('Bearer tokens, URL passwords and PEM blocks keep their harmless parts', () => {
  const r = new Redactor({ env: {} });
  assert.equal(r.redactString('Authorization: Bearer abc.DEF-123_456~xyz'), 'Authorization: Bearer [REDACTED:bearer]');
  assert.equal(
    r.redactString('connect postgres://admin:hunter2hunter@db.example.com:5432/app now'),
    'connect postgres://admin:[REDACTED:url-password]@db.example.com:5432/app now',
  );
  const pem = '-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234\nabcd==\n-----END RSA PRIVATE KEY-----';
  assert.equal(r.redactString(`key:\n${pem}\ndone`), 'key:\n[REDACTED:private-key]\ndone');
  // A block cut off before its END line is still removed.
  assert.equal(r.redactString('-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC'), '[REDACTED:private-key]');
  // Secrets inside text a tool read: a .env file and a JSON document.
  assert.equal(r.redactString('DB_PASSWORD=correct-horse-battery\nPORT=5432'), 'DB_PASSWORD=[REDACTED:secret]\nPORT=5432');
  assert.equal(r.redactString('{"api_key": "abc123xyz", "n": 1}'), '{"api_key": "[REDACTED:secret]", "n": 1}');
});

test('a literal env key is caught inside a longer string, nested anywhere, and when truncated', () => {
  const r = new Redactor();
  assert.ok(r.literalCount >= 1);
  assert.equal(r.redactString(`x${FAKE_KEY}y`), `x${REDACTED}`); // glued to other token chars: the rest goes too
  assert.equal(r.redactString(`key="${FAKE_KEY}";`), `key="${REDACTED}";`);
  assert.equal(r.redactString(`curl -H 'x-key: ${FAKE_KEY}' https://api`), `curl -H 'x-key: ${REDACTED}' https://api`);
  // An error message that shows only the start of the key.
  assert.equal(r.redactString(`Invalid key ${FAKE_KEY.slice(0, 18)}… rejected`), `Invalid key ${REDACTED}… rejected`);

  const input = {
    run: { messages: [{ role: 'user', content: `use ${FAKE_KEY} please` }, 'plain', [`deep ${FAKE_KEY}`]] },
    headers: { Authorization: 'Basic dXNlcjpwYXNz', 'X-Api-Key': 'short', Cookie: 'sid=1' },
    token: 'anything',
    refresh_token: 'r',
    apiKey: 42,
    password: null,
  };
  const frozen = JSON.stringify(input);
  const out = r.redact(input) as typeof input;
  assert.equal(JSON.stringify(input), frozen, 'input not mutated');
  assert.equal(out.run.messages[0] && (out.run.messages[0] as { content: string }).content, `use ${REDACTED} please`);
  assert.equal(out.run.messages[1], 'plain');
  assert.deepEqual(out.run.messages[2], [`deep ${REDACTED}`]);
  assert.deepEqual(out.headers, { Authorization: REDACTED, 'X-Api-Key': REDACTED, Cookie: REDACTED });
  assert.equal(out.token, REDACTED);
  assert.equal(out.refresh_token, REDACTED);
  assert.equal(out.apiKey, REDACTED);
  assert.equal(out.password, null, 'nothing to hide in a null');
});

test('explicit secrets (config keys) are literals too; short values are ignored', () => {
  const r = new Redactor({
    env: { SHORT_TOKEN: 'abc', HOME_PATH: '/home/some/long/path', AUTH_HEADER: 'hdr-value-123', DB_PASSWORD_X: 'pw-value-123' },
    secrets: ['my config key value', 'tiny'],
  });
  assert.equal(r.literalCount, 3);
  assert.equal(r.redactString('a hdr-value-123 b pw-value-123'), `a ${REDACTED} b ${REDACTED}`);
  assert.equal(r.redactString('the my config key value here'), `the ${REDACTED} here`);
  assert.equal(r.redactString('tiny abc /home/some/long/path'), 'tiny abc /home/some/long/path');
});

test('non-secrets pass through untouched', () => {
  const r = new Redactor();
  const texts = [
    'The task-manager-service-v2 handles risk-assessment and sk-learn-style pipelines.',
    'max_tokens=4096 input_tokens: 1234; see http://localhost:8080/path?x=1 and https://user@example.com/',
    'Bearer of bad news',
    'run_123e4567-e89b-12d3-a456-426614174000 sha256:0123456789abcdef 2026-11-22T04:20:00.000Z',
    'const token = getToken(); // token handling',
  ];
  for (const t of texts) assert.equal(r.redactString(t), t);
  const event = { event: 'run_end', usage: { input_tokens: 10, output_tokens: 5 }, max_tokens: 8, tokens: 3, tool: 'read_file' };
  assert.deepEqual(r.redact(event), event);
  assert.equal(isSecretFieldName('input_tokens'), false);
  assert.equal(isSecretFieldName('X-Auth-Token'), true);
});

test('odd values: cycles, errors, dates, bigints, buffers', () => {
  const r = new Redactor({ env: {} });
  const a: Record<string, unknown> = { n: 1n, when: new Date(0), err: new Error(`bad ${'ghp_' + 'A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8'}`), buf: Buffer.from('xyz') };
  a.self = a;
  const out = r.redact(a) as Record<string, unknown>;
  assert.equal(out.self, '[Circular]');
  assert.equal(out.n, 1n);
  assert.equal(out.when, '1970-01-01T00:00:00.000Z');
  assert.deepEqual(out.err, { name: 'Error', message: 'bad [REDACTED:github-token]' });
  assert.equal(out.buf, '[binary 3 bytes]');
  // The same object twice (not a cycle) is copied twice.
  const shared = { k: 'v' };
  assert.deepEqual(r.redact({ x: shared, y: shared }), { x: { k: 'v' }, y: { k: 'v' } });
});

test('redactToJson (the audit log\'s one-pass form) writes exactly JSON.stringify(redact(value))', () => {
  const key = 'sk-ant-api03-' + 'Z'.repeat(30);
  const r = new Redactor({ env: {}, secrets: ['literal-secret-value'] });
  const secretish = fc.constantFrom(`uses ${key} here`, 'literal-secret-value', 'Bearer abcdefghijklmnop', 'plain text', '', 'token=abcdefgh12345678');
  const keyName = fc.constantFrom('task', 'token', 'api_key', 'Authorization', 'message', 'input_tokens', 'password', 'note', '0');
  const leaf = fc.oneof(secretish, fc.string(), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.constant(undefined), fc.date({ noInvalidDate: true }));
  const tree = fc.letrec((tie) => ({
    node: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('node'), { maxLength: 4 }), fc.dictionary(keyName, tie('node'), { maxKeys: 5 })),
  })).node;
  fc.assert(
    fc.property(fc.dictionary(keyName, tree, { maxKeys: 6 }), (value) => {
      assert.equal(r.redactToJson(value), JSON.stringify(r.redact(value)));
    }),
    { numRuns: 500 },
  );
  // What the fast path hands over to redact(): cycles, BigInt, binary, Map, Set.
  const odd: Record<string, unknown> = { n: 1n, buf: Buffer.from('xyz'), m: new Map([['token', 'x']]), s: new Set([key]) };
  odd.self = odd;
  assert.equal(r.redactToJson(odd), JSON.stringify(r.redact(odd), (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));
  assert.deepEqual(JSON.parse(r.redactToJson({ err: new Error(`bad ${key}`) })), { err: { name: 'Error', message: 'bad [REDACTED:anthropic-key]' } });
});

test('scanning stays linear on adversarial input', () => {
  const r = new Redactor();
  for (const unit of ['a.', 'A_', 'sk-', 'eyJaaaaa.', 'a://b:', 'Bearer ', 'QUJD']) {
    const s = unit.repeat(Math.ceil(100_000 / unit.length));
    const t0 = performance.now();
    r.redactString(s);
    const ms = performance.now() - t0;
    assert.ok(ms < 250, `${unit}×: ${ms.toFixed(1)} ms`);
  }
});

test('digests are over canonical JSON', () => {
  assert.equal(canonicalJson({ b: 1, a: { d: [2, { f: 1, e: 0 }], c: undefined } }), '{"a":{"d":[2,{"e":0,"f":1}]},"b":1}');
  assert.equal(digest({ x: 1, y: 2 }), digest({ y: 2, x: 1 }));
  assert.match(digest('hello'), /^sha256:[0-9a-f]{16}$/);
  assert.notEqual(digest({ x: 1 }), digest({ x: 2 }));
});
