// The bubblewrap command line for one sandboxed command (pure: every path is already resolved).
//
// Layout inside the sandbox, mounted in this order (a later mount covers an earlier one):
//   /  an empty tmpfs, made read-only at the end
//   system: /usr read-only; /bin, /lib, … as the host has them (symlinks into /usr, or read-only binds);
//           a few files of /etc (users, DNS, TLS roots, dynamic linker, time zone); the Node.js install
//           when it is not under /usr; directories the config adds
//   /proc   a new procfs: only the sandbox's own processes (own pid namespace)
//   /dev    a minimal /dev (null, zero, random, tty, …)
//   /tmp    a private, empty tmpfs
//   the workspace read-only, then the writable directories read-write, then protected and read-only
//   paths on top of those, then hidden paths replaced by empty ones
// Namespaces: all of them (user, pid, ipc, net, uts, cgroup); `--share-net` only when the network is
// allowed. No capabilities, a new session (no terminal injection), killed when its parent dies.

export interface SandboxMounts {
  /** Realpath of the workspace root: the command's cwd. */
  workspace: string;
  /** Realpaths inside the workspace, mounted read-write from a descriptor bwrap inherits as `childFd`. */
  writable: { path: string; childFd: number }[];
  /** Realpaths mounted read-only on top of the writable ones. */
  readOnly: string[];
  /** Realpaths replaced by an empty directory or an empty file. */
  hidden: { path: string; kind: 'dir' | 'file' }[];
  system: SystemMounts;
  network: boolean;
  /** The command's whole environment. */
  env: Record<string, string>;
  /** Descriptor bwrap writes its info JSON to (the pid of the sandbox's init), or none. */
  infoFd?: number;
  /** Options this bwrap understands beyond the basics (0.8+): see BwrapFeatures. */
  features: BwrapFeatures;
}

export interface BwrapFeatures {
  /** `--disable-userns`: the command cannot create user namespaces of its own (less kernel surface). */
  disableUserns: boolean;
  /** `--size` for tmpfs: the private /tmp is capped (it lives in memory). */
  tmpfsSize: boolean;
}

/** Size cap of the private /tmp when bwrap can set one. */
export const TMP_SIZE_BYTES = 1024 * 1024 * 1024;

export interface SystemMounts {
  /** Host paths mounted read-only at the same place (missing ones are skipped by bwrap). */
  readOnly: string[];
  /** Top-level symlinks to recreate (merged /usr: /bin → usr/bin). */
  symlinks: { target: string; path: string }[];
}

export function bwrapArgs(m: SandboxMounts, argv: readonly string[]): string[] {
  const a: string[] = ['--unshare-all', '--unshare-user'];
  if (m.features.disableUserns) a.push('--disable-userns');
  if (m.network) a.push('--share-net');
  a.push('--die-with-parent', '--new-session', '--cap-drop', 'ALL');
  if (m.infoFd !== undefined) a.push('--info-fd', String(m.infoFd));
  a.push('--clearenv');
  for (const [k, v] of Object.entries(m.env)) a.push('--setenv', k, v);
  for (const p of m.system.readOnly) a.push('--ro-bind-try', p, p);
  for (const s of m.system.symlinks) a.push('--symlink', s.target, s.path);
  a.push('--proc', '/proc', '--dev', '/dev');
  if (m.features.tmpfsSize) a.push('--size', String(TMP_SIZE_BYTES));
  a.push('--tmpfs', '/tmp');
  a.push('--ro-bind', m.workspace, m.workspace);
  for (const w of m.writable) a.push('--bind-fd', String(w.childFd), w.path);
  for (const p of m.readOnly) a.push('--ro-bind', p, p);
  for (const h of m.hidden) {
    if (h.kind === 'dir') a.push('--tmpfs', h.path, '--remount-ro', h.path);
    else a.push('--ro-bind', '/dev/null', h.path);
  }
  a.push('--remount-ro', '/');
  a.push('--chdir', m.workspace, '--', ...argv);
  return a;
}
