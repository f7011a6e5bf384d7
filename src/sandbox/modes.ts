// delegate.sandbox.mode values (kept apart so the config schema imports no sandbox machinery).
export const SANDBOX_MODES = ['bwrap', 'off'] as const;
export type SandboxMode = (typeof SANDBOX_MODES)[number];
