// File and text helpers shared by the built-in tools: fs error wording, sizes, UTF-8-safe cuts and
// reads that never follow a final symlink.
import { constants as fsc, promises as fsp } from 'node:fs';
import type { Dirent } from 'node:fs';
import { errorMessage } from '../describe-cause.js';

/** O_NOFOLLOW where the platform has it: the final component of a resolved path must not be a symlink. */
export const OPEN_READ_FLAGS = fsc.O_RDONLY | (fsc.O_NOFOLLOW ?? 0);

export function errCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null ? (e as NodeJS.ErrnoException).code : undefined;
}

export function describeFsError(e: unknown): string {
  const code = errCode(e);
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ELOOP') return 'is a symlink or has too many levels of symbolic links';
  return code ?? errorMessage(e);
}

export function formatSize(n: number): string {
  if (n >= 1024 * 1024 && n % (1024 * 1024) === 0) return `${n / (1024 * 1024)} MiB`;
  if (n >= 1024 && n % 1024 === 0) return `${n / 1024} KiB`;
  return `${n} bytes`;
}

export const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/** Largest end <= `end` that does not split a UTF-8 sequence. */
export function utf8SafeEnd(buf: Buffer, end: number): number {
  let e = Math.min(end, buf.length);
  // Back up over continuation bytes (10xxxxxx) so buf[e] starts a character.
  let back = 0;
  while (e > 0 && e < buf.length && (buf[e] & 0xc0) === 0x80 && back < 3) {
    e--;
    back++;
  }
  return e;
}

/** Fills `buf` from `position` (fewer bytes at end of file); returns the number of bytes read. */
export async function readAt(fh: fsp.FileHandle, buf: Buffer, position: number): Promise<number> {
  let filled = 0;
  while (filled < buf.length) {
    const { bytesRead } = await fh.read(buf, filled, buf.length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled;
}

/** A NUL in the first `sniffBytes` bytes means binary. */
export async function isBinary(fh: fsp.FileHandle, size: number, sniffBytes: number): Promise<boolean> {
  const n = Math.min(size, sniffBytes);
  if (n <= 0) return false;
  const buf = Buffer.alloc(n);
  const got = await readAt(fh, buf, 0);
  return buf.subarray(0, got).includes(0);
}

/** Reads a whole (small) file through O_NOFOLLOW; null if it turned out bigger than `max`. */
export async function readSmall(abs: string, max: number): Promise<Buffer | null> {
  const fh = await fsp.open(abs, OPEN_READ_FLAGS);
  try {
    const size = (await fh.stat()).size;
    if (size > max) return null;
    const buf = Buffer.alloc(size);
    const got = await readAt(fh, buf, 0);
    return buf.subarray(0, got);
  } finally {
    // Closing a read-only handle cannot lose data; a failure here must not hide the read's result.
    await fh.close().catch(() => undefined);
  }
}

/** `dir/name` as shown to the model ("." is the workspace root). */
export const joinRel = (dirRel: string, name: string): string => (dirRel === '.' ? name : `${dirRel}/${name}`);

export const byName = (a: Dirent, b: Dirent): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
