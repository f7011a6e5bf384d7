// Resolving what a command may reach into real host paths, at the moment it is started (directories
// come and go during a run). Every path handed to bubblewrap is a realpath checked to be inside the
// workspace: a symlink planted in the workspace must not turn a mount into a window on the host.
import { closeSync, constants, existsSync, lstatSync, mkdirSync, openSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import type { SystemMounts } from './bwrap-args.js';
import { isInsideDir, outermost, type WorkspaceAccess } from './policy.js';

/** Top-level system directories: recreated as symlinks (merged /usr) or mounted read-only. */
const TOP_LEVEL = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];

/**
 * The parts of /etc programs need: users and groups (id, git), name resolution, TLS roots, the dynamic
 * linker cache, alternatives (Debian's /usr/bin/awk → /etc/alternatives/awk), time zone, MIME/magic
 * tables. Nothing else of /etc (no keys, no shadow files, no tool configs such as /etc/npmrc).
 */
export const ETC_ENTRIES = [
  'passwd', 'group', 'hosts', 'resolv.conf', 'nsswitch.conf', 'host.conf', 'gai.conf', 'services', 'protocols', 'networks',
  'ssl', 'ca-certificates', 'ca-certificates.conf', 'pki', 'crypto-policies', 'alternatives', 'ld.so.cache', 'ld.so.conf',
  'ld.so.conf.d', 'localtime', 'timezone', 'os-release', 'mime.types', 'magic', 'magic.mime', 'locale.alias', 'terminfo',
].map((e) => `/etc/${e}`);

export interface HostFs {
  lstat(p: string): { isSymbolicLink(): boolean; isDirectory(): boolean } | undefined;
  readlink(p: string): string;
  realpath(p: string): string | undefined;
}

export const realHostFs: HostFs = {
  lstat: (p) => {
    try {
      return lstatSync(p);
    } catch {
      return undefined;
    }
  },
  readlink: (p) => readlinkSync(p),
  realpath: (p) => {
    try {
      return realpathSync(p);
    } catch {
      return undefined;
    }
  },
};

/**
 * System mounts: /usr, the top-level directories as the host has them, /etc entries, the Node.js install
 * that runs this server when it is not under /usr (nvm, /opt/node, …), and `extra` (delegate.sandbox.readOnly).
 */
export function systemMounts(opts: { nodeExecPath: string; extra: readonly string[] }, fs: HostFs = realHostFs): SystemMounts {
  const readOnly: string[] = ['/usr'];
  const symlinks: SystemMounts['symlinks'] = [];
  for (const name of TOP_LEVEL) {
    const p = `/${name}`;
    const st = fs.lstat(p);
    if (!st) continue;
    if (st.isSymbolicLink()) symlinks.push({ target: fs.readlink(p), path: p });
    else if (st.isDirectory()) readOnly.push(p);
  }
  readOnly.push(...ETC_ENTRIES);
  const node = fs.realpath(opts.nodeExecPath);
  if (node && !node.startsWith('/usr/')) {
    // <prefix>/bin/node: the prefix holds npm and the global modules too.
    const prefix = path.dirname(path.dirname(node));
    if (prefix !== '/') readOnly.push(prefix);
  }
  for (const e of opts.extra) if (!readOnly.includes(e)) readOnly.push(e);
  return { readOnly, symlinks };
}

const inside = (root: string, p: string): boolean => p === root || p.startsWith(`${root}/`);

function realInside(root: string, p: string): string | undefined {
  try {
    const real = realpathSync(p);
    return inside(root, real) ? real : undefined;
  } catch {
    return undefined;
  }
}

/** Nearest existing ancestor's realpath (or p's own). */
function nearestExisting(p: string): string | undefined {
  let cur = p;
  for (;;) {
    if (existsSync(cur)) return realpathSync(cur);
    const up = path.dirname(cur);
    if (up === cur) return undefined;
    cur = up;
  }
}

/** Is the realpath `p` inside one of the writable realpaths? */
const underAny = (p: string, dirs: readonly string[]): boolean => dirs.some((d) => inside(d, p));

/** mkdir -p `abs`, only when the directory that would hold it is inside the workspace; its realpath. */
function createInside(root: string, abs: string): string | undefined {
  const anchor = nearestExisting(abs);
  if (!anchor || !inside(root, anchor)) return undefined;
  try {
    mkdirSync(abs, { recursive: true });
  } catch {
    return undefined;
  }
  return realInside(root, abs);
}

export interface ProtectedPaths {
  /**
   * Directories the server loads code or agents from (agent directories). Read-only in the sandbox;
   * when missing where a command could create them, created empty and mounted read-only, so that no
   * command can plant one.
   */
  dirs: string[];
  /** Files or directories mounted read-only when they exist (.git, mcp.json when not hidden). */
  paths: string[];
  /** Replaced by empty ones when they exist (the state dir, the config file with its keys). */
  hidden: string[];
  /**
   * Paths a command must not create where they are missing (config, .git, agent dirs, server code):
   * removed after the command when it did (created.ts). Not the state dirs: the server creates those.
   */
  noCreate: string[];
}

export interface WorkspaceMounts {
  /**
   * Read-write directories, each with an open descriptor (O_DIRECTORY) checked, after opening, to be the
   * directory inside the workspace: bwrap binds the descriptor, so swapping a path component for a
   * symlink between the check and the mount changes nothing. The caller closes them (closeMounts).
   */
  writable: { path: string; fd: number }[];
  readOnly: string[];
  hidden: { path: string; kind: 'dir' | 'file' }[];
}

const byDepth = (a: string, b: string): number => a.split('/').length - b.split('/').length || (a < b ? -1 : a > b ? 1 : 0);

/** Real host paths for the workspace mounts of one command. `root` is the workspace's realpath. */
export function workspaceMounts(root: string, access: WorkspaceAccess, prot: ProtectedPaths): WorkspaceMounts {
  const abs = (rel: string): string => (rel === '' ? root : path.join(root, rel));
  const writable: string[] = [];
  for (const rel of access.writable) {
    const p = abs(rel);
    const real = existsSync(p) ? realInside(root, p) : createInside(root, p);
    if (!real) continue; // leads out of the workspace (symlink): never writable
    try {
      if (!statSync(real).isDirectory()) continue;
    } catch {
      continue;
    }
    writable.push(real);
  }
  const writableReal = outermost(writable.map((w) => (w === root ? '' : w.slice(root.length + 1)))).map(abs);

  const readOnly = new Set<string>();
  for (const p of [...prot.paths, ...access.readOnly.map(abs)]) {
    const real = realInside(root, p);
    if (real && real !== root) readOnly.add(real);
  }
  for (const d of prot.dirs) {
    if (!inside(root, path.resolve(d))) continue;
    let real = realInside(root, d);
    // Missing: only a command that could write where it would be could plant it.
    if (!real && !existsSync(d)) {
      const anchor = nearestExisting(d);
      if (anchor && underAny(anchor, writableReal)) real = createInside(root, d);
    }
    if (real && real !== root) readOnly.add(real);
  }

  const hidden: WorkspaceMounts['hidden'] = [];
  for (const p of [...prot.hidden, ...access.hidden.map(abs)]) {
    const real = realInside(root, p);
    if (!real || real === root) continue;
    let dir: boolean;
    try {
      dir = statSync(real).isDirectory();
    } catch {
      continue;
    }
    hidden.push({ path: real, kind: dir ? 'dir' : 'file' });
  }
  // A hidden path inside another one is hidden already (and could not be mounted in a read-only tmpfs).
  const outerHidden = hidden.filter((h) => !hidden.some((o) => o !== h && o.kind === 'dir' && o.path !== h.path && isInsideDir(h.path, o.path)));
  const uniqHidden = outerHidden.filter((h, i) => outerHidden.findIndex((o) => o.path === h.path) === i);
  // Pins: every existing directory between the workspace root and a protected path that a command could
  // otherwise rename, mounted read-write onto itself. A mount point cannot be renamed or removed (EBUSY),
  // so `mv .claude x && mkdir -p .claude/agents` can no longer swap in a directory of planted agent files
  // around the read-only mount (mounts follow the renamed directory). Same descriptor checks as above.
  const pins = new Set<string>();
  for (const p of [...prot.dirs, ...prot.paths, ...prot.hidden]) {
    for (let a = path.dirname(path.resolve(p)); inside(root, a) && a !== root; a = path.dirname(a)) {
      const real = realInside(root, a);
      if (real && real !== root && underAny(real, writableReal) && !writableReal.includes(real)) pins.add(real);
    }
  }
  const writableFds: WorkspaceMounts['writable'] = [];
  for (const p of [...writableReal, ...pins].sort(byDepth)) {
    let fd: number;
    try {
      fd = openSync(p, constants.O_RDONLY | constants.O_DIRECTORY);
    } catch {
      continue;
    }
    let opened: string | undefined;
    try {
      opened = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      opened = undefined;
    }
    if (opened === p) writableFds.push({ path: p, fd });
    else closeSync(fd); // replaced meanwhile (or no /proc): not writable this time
  }
  return {
    writable: writableFds,
    readOnly: [...readOnly].filter((p) => !uniqHidden.some((h) => isInsideDir(p, h.path))).sort(byDepth),
    hidden: uniqHidden.sort((a, b) => byDepth(a.path, b.path)),
  };
}

/** Closes the descriptors workspaceMounts opened. */
export function closeMounts(m: WorkspaceMounts): void {
  for (const w of m.writable) {
    try {
      closeSync(w.fd);
    } catch {
      // already closed
    }
  }
}
