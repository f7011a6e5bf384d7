// Environment that keeps git from running programs named by files the model could have written, for
// every command (sandboxed or not; git may also be started by `npm test` and the like):
//   - no system or global config (GIT_CONFIG_NOSYSTEM, GIT_CONFIG_GLOBAL=/dev/null);
//   - safe.bareRepository=explicit: HEAD, config, objects/ and refs/ written into the workspace root do
//     not make it a repository that git uses (and whose config could set core.fsmonitor, core.pager, …);
//   - core.fsmonitor=false and core.hooksPath=/dev/null, whatever a repository config says.
// GIT_CONFIG_COUNT/KEY/VALUE are config given on the command line: they win over every config file.
const GIT_OVERRIDES: [string, string][] = [
  ['safe.bareRepository', 'explicit'],
  ['core.fsmonitor', 'false'],
  ['core.hooksPath', '/dev/null'],
];

export function gitHardeningEnv(): Record<string, string> {
  const env: Record<string, string> = {
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_CONFIG_COUNT: String(GIT_OVERRIDES.length),
  };
  GIT_OVERRIDES.forEach(([k, v], i) => {
    env[`GIT_CONFIG_KEY_${i}`] = k;
    env[`GIT_CONFIG_VALUE_${i}`] = v;
  });
  return env;
}
