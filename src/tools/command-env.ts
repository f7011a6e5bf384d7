// The environment run_command gives a program: an allowlist of the server's variables, minus anything
// that looks like a credential.
/** Environment variables passed through to commands (exact names); `LC_*` is allowed as a prefix. */
export const ENV_ALLOWLIST: readonly string[] = ['PATH', 'HOME', 'LANG', 'LANGUAGE', 'TERM', 'TMPDIR', 'TZ', 'USER', 'LOGNAME', 'NODE_ENV', 'CI'];

/** Names that are never passed, even if allowlisted (defence in depth, e.g. for `LC_*`). */
const ENV_DENY =
  /KEY|TOKEN|SECRET|PASSW|PASSPHRASE|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|SIGNATURE|CERT|^ANTHROPIC_|^OPENAI_|^AWS_|^AZURE_|^GCP_|^GOOGLE_|^GH_|^GITHUB_|^NPM_|^DELEGATE_/i;

/** The environment a command sees: only allowlisted variables from `parent`, minus credential-like names. */
export function buildChildEnv(parent: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(parent)) {
    if (value === undefined) continue;
    if (!ENV_ALLOWLIST.includes(name) && !name.startsWith('LC_')) continue;
    if (ENV_DENY.test(name)) continue;
    env[name] = value;
  }
  return env;
}
