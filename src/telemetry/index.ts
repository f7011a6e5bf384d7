// Telemetry entry point. Loads the OpenTelemetry SDK (its own bundle chunk) only when telemetry is on:
// with it off, start-up imports nothing and every hook is an `undefined?.` check.
import type { ResolvedConfig } from '../config/config.js';
import { VERSION } from '../version.js';
import { telemetrySettings } from '../config/telemetry-config.js';
import type { Telemetry } from './types.js';

export type { Telemetry } from './types.js';

export async function loadTelemetry(cfg: ResolvedConfig, env: NodeJS.ProcessEnv = process.env): Promise<Telemetry | undefined> {
  // Throws ConfigError for a setting it cannot honour (the CLI reports it as one line).
  const settings = telemetrySettings(cfg.delegate.telemetry, env);
  if (!settings) return undefined;
  const { OtelTelemetry } = await import('./otel.js');
  return new OtelTelemetry(settings, VERSION);
}
