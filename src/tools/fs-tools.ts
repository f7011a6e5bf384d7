// The read-only built-in file tools (read_file, list_dir, search_files), made with the caps they
// enforce. Every path goes through resolveToolPath (tool-path.ts); every failure is an error outcome.
import { FS_LIMITS, type FsLimits } from './fs-limits.js';
import { listDirTool } from './list-dir.js';
import { readFileTool } from './read-file.js';
import { searchFilesTool } from './search-files.js';
import type { BuiltinTool } from './types.js';

export { FS_LIMITS, type FsLimits } from './fs-limits.js';

/** Read-only built-in tools keyed by tool name, with `limits` over the defaults. */
export function createFsTools(limits: Partial<FsLimits> = {}): Record<string, BuiltinTool> {
  const l: FsLimits = { ...FS_LIMITS, ...limits };
  return { read_file: readFileTool(l), list_dir: listDirTool(l), search_files: searchFilesTool(l) };
}

/** The read-only tools with the default caps. */
export const fsTools: Record<string, BuiltinTool> = createFsTools();
