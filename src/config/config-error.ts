// A problem with the user's configuration (file, flag or environment): reported as one line naming what
// to fix, never as a stack trace. A module of its own so config.ts and the files it uses can all throw it.
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
