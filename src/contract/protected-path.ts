// The protected-path check as the file tools see it: the permission layer decides (permissions/
// protected-paths.ts builds a ProtectedGuard per call), the tools only ask. Declared here so that tools/
// depends on the question, not on the permission layer that answers it.
import { z } from 'zod';

/** What a tool is about to do with a path. `list` = show its name (list_dir, search_files walking). */
export const ProtectedAccess = z.enum(['read', 'list', 'write']);
export type ProtectedAccess = z.infer<typeof ProtectedAccess>;

export interface ProtectedPathCheck {
  /**
   * null when `access` to `abs` is fine; otherwise a refusal whose `message` ("protected: …") is for the
   * model. `abs` is the resolved real path; `lexical` the path as requested (either form is caught).
   */
  check(access: ProtectedAccess, abs: string, lexical?: string): { message: string } | null;
  /** True when listing tools must not show `abs` at all. */
  hidden(abs: string): boolean;
}
