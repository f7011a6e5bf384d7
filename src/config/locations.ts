// Where the user's own files live, from the environment (HOME, XDG_CONFIG_HOME) rather than the process's
// working directory: clients start the server from "/" or their own folder.
import os from 'node:os';
import path from 'node:path';

export function homeDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.HOME || os.homedir();
}

/** `$XDG_CONFIG_HOME/delegate-mcp`, default `~/.config/delegate-mcp`: the user's mcp.json and agents/. */
export function userConfigDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : path.join(homeDir(env), '.config');
  return path.join(base, 'delegate-mcp');
}
