// Bash(...) rules and the argv checks that run before any rule is consulted.
//
// run_command spawns `argv` directly (shell: false), so a rule is matched against the argv array, never
// against a command string (string/substring matching is how shell allowlists get bypassed).
//
// Rule syntax, `Bash(<pattern>)`, pattern = whitespace-separated words ('…' and "…" quote words with
// spaces; inside "…", \" and \\ are escapes):
//   Bash(npm test)          exact: argv is exactly ["npm", "test"]; `npm test --x` does NOT match.
//   Bash(npm run test:*)    prefix (Claude Code's trailing `:*`): argv starts with the words, then anything.
//                           The last word also matches a `word:suffix` argument (npm script namespaces), so
//                           this matches `npm run test`, `npm run test:unit`, `npm run test -- --x`, but not
//                           `npm run testevil`. argv[0] is never extended: `Bash(git:*)` is `git …`, not `git:x`.
//   Bash(npm run *)         trailing ` *`: the words, then zero or more arguments (no `:` extension).
//   Bash                    any command (still subject to the refusals below).
// Any other unquoted `*` is an error (quote it to match a literal asterisk). argv[0] is matched exactly as
// given: no PATH lookup, no basename (`/usr/bin/git` is not `git`).
//
// Refusals that apply before/around rule matching (all documented in the reasons they produce):
//   1. An argument containing a shell metacharacter is refused outright, whatever the rules say: we never
//      use a shell, so such an argument is either a confused model or an injection attempt.
//   2. "Inline code" forms: interpreters given code on the command line (`bash -c`, `node -e`, `python -c`,
//      `perl -e`, …), `find -exec/-delete`, git options that run commands or install config that does
//      (`git -c`, `--config-env`, `git config`, `--upload-pack`, `rebase --exec`, …), package runners
//      (`npx <pkg>`, `npm exec`, `--script-shell`, `--node-options`) and wrappers that run another program
//      (`env`, `sudo`, `xargs`, `timeout`, …), and forms that write files or leave the workspace (`sed`
//      scripts with e/w/W or s///e, s///w, `sed -f`, `sed -i`; `git … --output`, `format-patch -o`,
//      `archive -o`, `git -C`/`--git-dir`/`--work-tree` outside). These are allowed only by a rule that *names the form*: its
//      literal words must reach the dangerous argument. `Bash(git:*)` does not allow
//      `git -c core.sshCommand=x fetch`; `Bash(python3 -c:*)` allows `python3 -c …`; `Bash(npx tsc:*)`
//      allows `npx tsc --noEmit` but `Bash(npx:*)` allows no package; a wrapper must be spelled out
//      completely (`Bash(env FOO=1 npm test)`), because its dangerous part is the whole rest.
//      Bare `Bash` names nothing, so it never allows these. The lists are best effort (see GTFOBins);
//      they live in dangerous-forms.ts.
//   3. argv[0] containing "/" (a path, e.g. ./script.sh) is allowed only by a rule naming that exact path
//      (bare `Bash` does not).
// Deny rules match plain (no coverage requirement): a deny is only ever stricter.
// Limits (documented, not solved here): allowing a program allows whatever it does. `npm test` runs
// scripts from package.json (which Edit rules may let the model change), `make` runs the Makefile, etc.
// Deny rules on commands are best effort (`git -C . push` is not `git push`); the allow list is the guard.


export interface CommandPattern {
  /** Literal words. Empty only for bare `Bash`. */
  words: string[];
  /** Trailing `:*` or ` *`: more arguments may follow. */
  prefix: boolean;
  /** Trailing `:*` on a word after argv[0]: that word also matches `word:anything`. */
  extendLast: boolean;
}

/** Characters refused in any argument (and therefore in any rule word). */
export const SHELL_METACHARS = [';', '&', '|', '$', '`', '(', ')', '<', '>', '\n', '\r'] as const;

const METACHAR_NAMES: Record<string, string> = { '\n': 'newline', '\r': 'carriage return' };

export function findMetachar(s: string): string | null {
  for (const ch of s) if ((SHELL_METACHARS as readonly string[]).includes(ch)) return METACHAR_NAMES[ch] ?? `"${ch}"`;
  return null;
}

/** Parse the inside of `Bash(...)`. */
export function parseCommandPattern(spec: string): { ok: true; pattern: CommandPattern } | { ok: false; error: string } {
  // Tokenise, remembering which characters were quoted (a quoted `*` or `:*` is literal).
  const words: { text: string; quoted: boolean[] }[] = [];
  let cur: { text: string; quoted: boolean[] } | null = null;
  for (let i = 0; i < spec.length; i++) {
    const c = spec[i];
    if (/\s/.test(c)) {
      if (cur) words.push(cur);
      cur = null;
      continue;
    }
    cur ??= { text: '', quoted: [] };
    if (c === "'" || c === '"') {
      const end = spec.indexOf(c, i + 1);
      let j = i + 1;
      let body = '';
      if (c === "'") {
        if (end < 0) return { ok: false, error: 'unterminated \' quote' };
        body = spec.slice(i + 1, end);
        j = end;
      } else {
        for (; j < spec.length && spec[j] !== '"'; j++) {
          if (spec[j] === '\\' && (spec[j + 1] === '"' || spec[j + 1] === '\\')) j++;
          body += spec[j];
        }
        if (j >= spec.length) return { ok: false, error: 'unterminated " quote' };
      }
      cur.text += body;
      for (let k = 0; k < body.length; k++) cur.quoted.push(true);
      i = j;
      continue;
    }
    cur.text += c;
    cur.quoted.push(false);
  }
  if (cur) words.push(cur);

  let prefix = false;
  let extendLast = false;
  const last = words[words.length - 1];
  if (last && last.text === '*' && !last.quoted[0]) {
    words.pop();
    prefix = true;
  } else if (last && last.text.endsWith(':*') && !last.quoted[last.text.length - 1] && !last.quoted[last.text.length - 2]) {
    prefix = true;
    last.text = last.text.slice(0, -2);
    last.quoted = last.quoted.slice(0, -2);
    if (last.text === '') words.pop();
    else extendLast = words.length >= 2;
  }
  if (words.length === 0) {
    return { ok: false, error: 'no command; write Bash (without parentheses) to mean any command' };
  }
  for (const w of words) {
    const star = [...w.text].findIndex((ch, k) => ch === '*' && !w.quoted[k]);
    if (star >= 0) {
      return {
        ok: false,
        error: `"*" is only supported as a trailing ":*" or " *" (quote it to match a literal "*" in "${w.text}")`,
      };
    }
    const meta = findMetachar(w.text);
    if (meta) {
      return {
        ok: false,
        error: `word ${JSON.stringify(w.text)} contains shell metacharacter ${meta}; such arguments are always refused, so this rule could never match`,
      };
    }
    if (w.text === '') return { ok: false, error: 'empty word ("" or \'\')' };
  }
  return { ok: true, pattern: { words: words.map((w) => w.text), prefix, extendLast } };
}

export function matchCommand(p: CommandPattern, argv: readonly string[]): boolean {
  const k = p.words.length;
  if (k === 0) return true; // bare Bash
  if (p.prefix ? argv.length < k : argv.length !== k) return false;
  for (let i = 0; i < k - 1; i++) if (argv[i] !== p.words[i]) return false;
  const a = argv[k - 1];
  const w = p.words[k - 1];
  return a === w || (p.extendLast && a.startsWith(`${w}:`));
}

/** Highest argv index whose value a matching rule spells out literally (-1: none). */
export function coverage(p: CommandPattern, argv: readonly string[]): number {
  if (!p.prefix) return argv.length - 1;
  const k = p.words.length;
  // `test:*` matching `test:unit` did not spell out that argument.
  return argv[k - 1] === p.words[k - 1] ? k - 1 : k - 2;
}

/** Structural problems with argv, independent of any rule. */
export function argvProblem(argv: unknown): string | null {
  if (!Array.isArray(argv)) return 'argv must be an array of strings';
  if (argv.length === 0) return 'argv is empty';
  for (let i = 0; i < argv.length; i++) {
    const a: unknown = argv[i];
    if (typeof a !== 'string') return `argv[${i}] is not a string`;
    if (a.includes('\0')) return `argv[${i}] contains a NUL byte`;
    const meta = findMetachar(a);
    if (meta) return `argv[${i}] ${JSON.stringify(a)} contains shell metacharacter ${meta}; refused`;
  }
  if (argv[0] === '' || /\s/.test(argv[0] as string)) {
    return `argv[0] ${JSON.stringify(argv[0])} is not a program name`;
  }
  return null;
}

/** Human form of argv for reasons: words joined by spaces, quoted when needed. */
export function describeArgv(argv: readonly string[]): string {
  return argv.map((a) => (a === '' || /[\s"'\\]/.test(a) ? JSON.stringify(a) : a)).join(' ');
}
