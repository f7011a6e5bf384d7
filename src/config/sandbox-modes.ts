// delegate.sandbox.mode values: a config setting the sandbox reads (config/ imports no sandbox machinery).
export const SANDBOX_MODES = ['bwrap', 'off'] as const;
export type SandboxMode = (typeof SANDBOX_MODES)[number];
