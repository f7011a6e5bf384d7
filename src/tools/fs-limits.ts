// Caps of the read-only file tools. Passed to each tool when it is made (createFsTools), never a
// mutable global: tests and callers that want other caps make their own tools.
export interface FsLimits {
  /** read_file: maximum bytes of file text returned by one call. */
  readMaxBytes: number;
  /** Bytes sniffed for a NUL to decide that a file is binary. */
  binarySniffBytes: number;
  /** list_dir: maximum entries listed. */
  listMaxEntries: number;
  /** search_files: maximum matching lines reported. */
  searchMaxMatches: number;
  /** search_files: maximum directory entries (files and directories) visited. */
  searchMaxFiles: number;
  /** search_files: files larger than this are skipped. */
  searchMaxFileBytes: number;
  /** search_files: each reported line is cut to this many characters. */
  searchLineMaxChars: number;
  /** search_files: the whole search stops (with what it found) after this long. */
  searchDeadlineMs: number;
}

export const FS_LIMITS: Readonly<FsLimits> = Object.freeze({
  readMaxBytes: 256 * 1024,
  binarySniffBytes: 8 * 1024,
  listMaxEntries: 1000,
  searchMaxMatches: 200,
  searchMaxFiles: 20_000,
  searchMaxFileBytes: 1024 * 1024,
  searchLineMaxChars: 300,
  searchDeadlineMs: 10_000,
});
