// The "inline code" forms of a command (refusal 2 in command.ts): interpreters given code on the command
// line, find -exec, git options that run programs or write outside, sed scripts that run or write, package
// runners and wrappers. dangerousForm names the argument a rule must spell out to allow the command; the
// Bash(...) grammar beside it (command.ts) is what such a rule is written in.
import path from 'node:path';

export interface DangerousForm {
  /** A rule must spell out argv up to and including this index to allow the command. */
  index: number;
  what: string;
}

const SHELLS = new Set(['bash', 'sh', 'zsh', 'dash', 'fish', 'ksh', 'mksh', 'ash', 'csh', 'tcsh', 'yash']);
const JS_RUNTIMES = new Set(['node', 'nodejs', 'deno', 'bun']);
const PYTHON = /^(?:python|pypy)(?:\d+(?:\.\d+)*)?$/;
const PERL_RUBY = new Set(['perl', 'ruby']);
const AWK = new Set(['awk', 'gawk', 'mawk', 'nawk']);
/** Programs whose job is to run another program given in their arguments. */
const WRAPPERS = new Set([
  'env', 'sudo', 'doas', 'su', 'xargs', 'nohup', 'nice', 'ionice', 'timeout', 'stdbuf', 'setsid', 'chroot',
  'time', 'watch', 'strace', 'ltrace', 'flock', 'unbuffer', 'parallel', 'busybox', 'command', 'exec', 'eval',
  'runuser', 'chrt', 'taskset', 'unshare', 'nsenter', 'script',
]);
const FIND_EXEC = new Set(['-exec', '-execdir', '-ok', '-okdir', '-delete', '-fprint', '-fprint0', '-fprintf', '-fls']);

/** `-lc`-style short-option cluster containing one of `letters`. */
const shortCluster = (a: string, letters: string): boolean =>
  /^-[A-Za-z]+$/.test(a) && [...letters].some((l) => a.slice(1).includes(l));

const hasOpt = (a: string, long: string): boolean => a === long || a.startsWith(`${long}=`);

function lastIndex(argv: readonly string[], pred: (a: string, i: number) => boolean, from = 1): number {
  let found = -1;
  for (let i = from; i < argv.length; i++) if (pred(argv[i], i)) found = i;
  return found;
}

/** git global options that take a separate value (so the subcommand is found correctly). */
const GIT_GLOBAL_WITH_VALUE = new Set(['-C', '-c', '--git-dir', '--work-tree', '--namespace', '--super-prefix', '--config-env', '--exec-path']);

/** A path argument that leaves the directory it is given in: absolute, `~…`, or with a `..` segment. */
const leavesCwd = (p: string): boolean => p.startsWith('/') || p.startsWith('~') || p.split(/[\\/]/).includes('..');

function gitForm(argv: readonly string[]): DangerousForm | null {
  const hits: DangerousForm[] = [];
  let sub = -1;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-c' || /^-c./.test(a) || hasOpt(a, '--config-env')) {
      hits.push({ index: i, what: `"git ${a}" (sets config, which can run commands)` });
    } else if (a.startsWith('--exec-path=') || (a === '--exec-path' && i + 1 < argv.length && !argv[i + 1].startsWith('-'))) {
      hits.push({ index: i, what: `"git --exec-path" (runs programs from another directory)` });
    } else {
      // -C / --git-dir / --work-tree naming a place outside the workspace: another repository, whose
      // config and hooks the workspace's rules never saw.
      const m = /^(-C|--git-dir|--work-tree)(?:=(.*))?$/.exec(a);
      const value = m ? (m[2] ?? argv[i + 1]) : undefined;
      if (m && value !== undefined && leavesCwd(value)) {
        hits.push({ index: m[2] === undefined ? i + 1 : i, what: `"git ${m[1]} ${value}" (a repository outside the workspace)` });
      }
    }
    if (!a.startsWith('-')) {
      sub = i;
      break;
    }
    if (GIT_GLOBAL_WITH_VALUE.has(a)) i++;
  }
  if (sub >= 0) {
    const name = argv[sub];
    const rest = (pred: (a: string) => boolean): number => lastIndex(argv, pred, sub + 1);
    let i = -1;
    let what = '';
    if (name === 'config') {
      i = sub;
      what = '"git config" (can install commands via core.sshCommand, core.pager, core.fsmonitor, alias.*)';
    } else if (['filter-branch', 'filter-repo'].includes(name)) {
      i = sub;
      what = `"git ${name}" (runs shell filters)`;
    } else if ((name === 'submodule' || name === 'bisect') && (i = rest((a) => a === 'foreach' || a === 'run')) >= 0) {
      what = `"git ${name} ${argv[i]}" (runs a command)`;
    } else if (name === 'rebase' || name === 'difftool' || name === 'mergetool') {
      i = rest((a) => a === '-x' || hasOpt(a, '--exec') || hasOpt(a, '--extcmd') || (name === 'rebase' && /^-[A-Za-z]*x/.test(a)));
      what = `"git ${name}" with a command option`;
    } else if (['clone', 'fetch', 'pull', 'ls-remote', 'archive', 'push', 'send-pack', 'fetch-pack', 'remote'].includes(name)) {
      const clientSide = ['clone', 'fetch', 'pull', 'ls-remote', 'archive', 'fetch-pack'].includes(name);
      i = rest((a) => hasOpt(a, '--upload-pack') || hasOpt(a, '--receive-pack') || hasOpt(a, '--exec') || (clientSide && a === '-u'));
      what = `"git ${name}" with --upload-pack/--receive-pack/--exec (runs a command)`;
    }
    if (i >= 0) hits.push({ index: i, what });
    // Options that write a file named in the argument (git diff/log --output=…, format-patch -o, archive -o),
    // and --upload-pack/--receive-pack on any subcommand.
    for (let j = sub + 1; j < argv.length; j++) {
      const o = argv[j];
      if (o === '--') break;
      const writes = hasOpt(o, '--output') || hasOpt(o, '--output-directory') || (['format-patch', 'archive'].includes(name) && /^-o/.test(o));
      if (writes) {
        const separate = o === '--output' || o === '--output-directory' || o === '-o';
        hits.push({ index: separate ? Math.min(j + 1, argv.length - 1) : j, what: `"git ${name} ${o}" (writes the file it names)` });
      } else if (hasOpt(o, '--upload-pack') || hasOpt(o, '--receive-pack')) {
        hits.push({ index: j, what: `"git ${name} ${o}" (runs a command)` });
      }
    }
  }
  return hits.reduce<DangerousForm | null>((m, h) => (m && m.index >= h.index ? m : h), null);
}

/**
 * sed: the script commands `e` (run a command), `w`/`W` (write a file) and the `s` flags `e` and `w`, a
 * script read from a file (`-f`: not seen here), and in-place editing (`-i`, `--in-place`: writes the
 * files it is given). The form's index is the script (or the option) a rule must spell out. GNU sed's
 * `--sandbox` (refuses e/w/r) does not lift `-i` or `-f`.
 */
function sedForm(argv: readonly string[]): DangerousForm | null {
  const hits: DangerousForm[] = [];
  const scripts: { index: number; text: string }[] = [];
  const script = (index: number, text: string | undefined) => {
    if (text !== undefined) scripts.push({ index, text });
  };
  let sandboxed = false;
  let sawScript = false; // the first non-option argument is the script unless -e/--expression gave one
  const fromFile = (index: number, opt: string) => hits.push({ index: Math.min(index, argv.length - 1), what: `"sed ${opt}" (runs a script from a file)` });
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      if (!sawScript && scripts.length === 0) script(i + 1, argv[i + 1]);
      break;
    }
    if (a === '--sandbox') sandboxed = true;
    else if (a === '--expression') script(i + 1, argv[++i]);
    else if (a.startsWith('--expression=')) script(i, a.slice('--expression='.length));
    else if (a === '--file') fromFile(++i, a);
    else if (a.startsWith('--file=')) fromFile(i, a);
    else if (hasOpt(a, '--in-place')) hits.push({ index: i, what: `"sed ${a}" (edits files in place)` });
    else if (a === '--line-length') i++;
    else if (a.startsWith('--')) continue; // --quiet, --posix, --regexp-extended, --null-data, …
    else if (/^-./.test(a)) {
      // A short-option cluster (-n, -E, -r, -s, -u, -z): -e/-f/-l take the rest or the next argument;
      // -i takes an attached backup suffix.
      for (let k = 1; k < a.length; k++) {
        const c = a[k];
        const rest = a.slice(k + 1);
        if (c === 'i') {
          hits.push({ index: i, what: `"sed ${a}" (edits files in place)` });
          break;
        }
        if (c === 'e' || c === 'f' || c === 'l') {
          const at = rest ? i : ++i;
          const value = rest || argv[at];
          if (c === 'e') script(at, value);
          if (c === 'f') fromFile(at, a);
          break;
        }
      }
    } else if (!sawScript && scripts.length === 0) {
      sawScript = true;
      script(i, a);
    }
  }
  if (!sandboxed) {
    for (const sc of scripts) {
      if (sedScriptRuns(sc.text)) hits.push({ index: sc.index, what: `"sed ${sc.text}" (its e/w/W command or s///e, s///w flag runs a command or writes a file)` });
    }
  }
  return hits.reduce<DangerousForm | null>((m, h) => (m && m.index >= h.index ? m : h), null);
}

/**
 * Does one sed script run a command or write a file? `;` and newlines never reach here (refused in every
 * argument), so a script is one command, possibly inside `{ }`. Parses addresses, then the command letter;
 * what it cannot parse counts as dangerous.
 */
export function sedScriptRuns(script: string): boolean {
  let i = 0;
  const s = script;
  const ws = () => {
    while (i < s.length && /\s/.test(s[i])) i++;
  };
  const regex = (delim: string): boolean => {
    // from after the opening delimiter to after the closing one (backslash escapes the next character)
    for (; i < s.length; i++) {
      if (s[i] === '\\') i++;
      else if (s[i] === delim) {
        i++;
        return true;
      }
    }
    return false;
  };
  const address = (): boolean => {
    ws();
    if (/[0-9]/.test(s[i] ?? '')) {
      while (/[0-9~]/.test(s[i] ?? '')) i++;
    } else if (s[i] === '/') {
      i++;
      if (!regex('/')) return false;
      while (/[IM]/.test(s[i] ?? '')) i++;
    } else if (s[i] === '\\' && i + 1 < s.length) {
      const d = s[i + 1];
      i += 2;
      if (!regex(d)) return false;
      while (/[IM]/.test(s[i] ?? '')) i++;
    } else if (s[i] === '+' || s[i] === '~') {
      i++;
      while (/[0-9]/.test(s[i] ?? '')) i++;
    }
    return true;
  };
  for (let depth = 0; depth < 16; depth++) {
    if (!address()) return true;
    ws();
    if (s[i] === ',') {
      i++;
      if (!address()) return true;
      ws();
    }
    if (s[i] === '!') {
      i++;
      ws();
    }
    const cmd = s[i];
    if (cmd === undefined || cmd === '}') return false;
    if (cmd === '{') {
      i++;
      continue; // the command inside the block
    }
    if (cmd === 'e' || cmd === 'w' || cmd === 'W') return true;
    if (cmd === 's') {
      const d = s[i + 1];
      if (d === undefined || d === '\\' || d === '\n') return true;
      i += 2;
      if (!regex(d) || !regex(d)) return true;
      // flags up to the end (or a closing brace)
      const flags = s.slice(i).replace(/\}.*$/, '');
      return /[we]/.test(flags.replace(/\s+$/, ''));
    }
    if (cmd === 'y') return false;
    // Other commands (p, d, n, q, a/i/c text, r/R reads, =, l, …) neither run nor write.
    return !/^[a-zA-Z=#:]$/.test(cmd);
  }
  return true;
}

const PACKAGE_RUNNERS = new Set(['npm', 'npx', 'pnpm', 'pnpx', 'yarn', 'bunx']);

/**
 * npm and friends: `npx <pkg>` / `npm exec <pkg>` / `pnpm dlx <pkg>` run whatever package is named (even one
 * fetched from the registry), so a rule must name the package; `--call`/`-c` takes inline shell code; and
 * `--script-shell` / `--node-options` turn an allowed `npm test` into any program or any preloaded code.
 */
function packageRunnerForm(prog: string, argv: readonly string[]): DangerousForm | null {
  const flag = lastIndex(argv, (a) => hasOpt(a, '--script-shell') || hasOpt(a, '--node-options') || hasOpt(a, '--call') || (a === '-c' && prog !== 'yarn'));
  if (flag >= 0) return { index: Math.min(flag + 1, argv.length - 1), what: `"${prog} ${argv[flag]}" (runs a command)` };
  let runner = prog === 'npx' || prog === 'pnpx' || prog === 'bunx' ? 0 : -1;
  if (runner < 0) {
    const sub = argv.findIndex((a, i) => i > 0 && !a.startsWith('-'));
    if (sub > 0 && ['exec', 'x', 'dlx'].includes(argv[sub])) runner = sub;
  }
  if (runner < 0) return null;
  const pkg = argv.findIndex((a, i) => i > runner && !a.startsWith('-'));
  const index = pkg < 0 ? argv.length - 1 : pkg;
  return { index, what: `"${argv.slice(0, runner + 1).join(' ')}" runs whatever package it names` };
}

/**
 * Does argv run code given inline, or another program? Returns the form with the highest index a rule
 * must reach. Detection uses the basename of argv[0] (so `/bin/bash -c` counts too).
 */
export function dangerousForm(argv: readonly string[]): DangerousForm | null {
  const prog = path.posix.basename(argv[0]);
  const all = argv.length - 1;
  if (WRAPPERS.has(prog)) return { index: all, what: `"${prog}" runs another program` };
  if (AWK.has(prog)) return { index: all, what: `"${prog}" runs an inline program` };
  let i = -1;
  let flag = '';
  if (SHELLS.has(prog)) {
    i = lastIndex(argv, (a) => a === '-c' || shortCluster(a, 'c') || (prog === 'fish' && (a === '-C' || hasOpt(a, '--command') || hasOpt(a, '--init-command'))));
    flag = '-c';
  } else if (JS_RUNTIMES.has(prog)) {
    i = lastIndex(argv, (a) =>
      ['-e', '-p', '--eval', '--print'].some((o) => hasOpt(a, o)) ||
      shortCluster(a, 'ep') ||
      (prog === 'deno' && a === 'eval') ||
      // --import/--require/--loader given a data: URL is inline code too (any data: argument, to be safe).
      a.includes('data:'),
    );
    flag = '-e/--eval/-p/--print';
  } else if (PYTHON.test(prog)) {
    i = lastIndex(argv, (a) => a === '-c' || shortCluster(a, 'c'));
    flag = '-c';
  } else if (PERL_RUBY.has(prog)) {
    i = lastIndex(argv, (a) => shortCluster(a, 'eE'));
    flag = '-e';
  } else if (prog === 'find') {
    i = lastIndex(argv, (a) => FIND_EXEC.has(a));
    if (i >= 0) return { index: i, what: `"find ${argv[i]}" (runs commands or changes files)` };
  } else if (prog === 'git') {
    return gitForm(argv);
  } else if (prog === 'sed' || prog === 'gsed') {
    return sedForm(argv);
  } else if (PACKAGE_RUNNERS.has(prog)) {
    return packageRunnerForm(prog, argv);
  } else if (prog === 'tar' || prog === 'bsdtar') {
    i = lastIndex(argv, (a) => ['--to-command', '--checkpoint-action', '--use-compress-program', '--info-script', '--new-volume-script', '--rsh-command'].some((o) => hasOpt(a, o)) || a === '-I' || a === '-F');
    if (i >= 0) return { index: i, what: `"tar ${argv[i]}" (runs a command)` };
  } else if (prog === 'rsync') {
    i = lastIndex(argv, (a) => shortCluster(a, 'e') || hasOpt(a, '--rsh') || hasOpt(a, '--rsync-path'));
    if (i >= 0) return { index: i, what: `"rsync ${argv[i]}" (runs a command)` };
  } else if (prog === 'ssh' || prog === 'scp' || prog === 'sftp') {
    // -o ProxyCommand=…/LocalCommand=…, or -F with a config file that sets them, run local commands.
    i = lastIndex(argv, (a) => /^-[A-Za-z]*[oF]/.test(a));
    if (i >= 0) return { index: i, what: `"${prog} ${argv[i]}" (options can run a local command)` };
  } else if (prog === 'vi' || prog === 'vim' || prog === 'nvim' || prog === 'ex') {
    i = lastIndex(argv, (a) => a === '-c' || a === '--cmd' || a === '-S' || a.startsWith('+'));
    flag = '-c/--cmd/+cmd';
  }
  if (i >= 0) return { index: i, what: `"${prog} ${argv[i]}" (inline code via ${flag})` };
  return null;
}
