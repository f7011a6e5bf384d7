// Telemetry settings: OpenTelemetry is off unless an OTLP endpoint is given, the standard way
// (OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / …_METRICS_ENDPOINT) or as
// `delegate.telemetry.endpoint` in mcp.json. Nothing here imports OpenTelemetry: when telemetry is off,
// the SDK is never loaded (src/telemetry/index.ts imports it lazily).
import { z } from 'zod';
import { ConfigError } from './config-error.js';

export const OTLP_PROTOCOLS = ['http/protobuf', 'http/json'] as const;
export type OtlpProtocol = (typeof OTLP_PROTOCOLS)[number];

export const TelemetryConfigSchema = z
  .strictObject({
    /** false switches telemetry off even when OTEL_* variables are set; true needs an endpoint. */
    enabled: z.boolean().optional(),
    /** OTLP/HTTP base URL (`/v1/traces` and `/v1/metrics` are appended); the OTEL_EXPORTER_OTLP_* variables win. */
    endpoint: z.string().url().optional(),
    protocol: z.enum(OTLP_PROTOCOLS).optional(),
    serviceName: z.string().min(1).optional(),
    /** Extra resource attributes; OTEL_RESOURCE_ATTRIBUTES wins on the same key. */
    resourceAttributes: z.record(z.string(), z.string()).optional(),
    /** Headers for the OTLP requests (e.g. an API key of the backend); OTEL_EXPORTER_OTLP_HEADERS also works. */
    headers: z.record(z.string(), z.string()).optional(),
    /** Record prompts and answers on spans (redacted like the audit log). Off by default. */
    captureContent: z.boolean().optional(),
    metrics: z.boolean().optional(),
  })
  .default({});

export type TelemetryConfig = z.infer<typeof TelemetryConfigSchema>;

/** What the OpenTelemetry side needs, resolved from mcp.json and the environment. */
export interface TelemetrySettings {
  /** Explicit OTLP base URL from mcp.json; undefined lets the exporters read OTEL_EXPORTER_OTLP_* themselves. */
  endpoint?: string;
  protocol: OtlpProtocol;
  serviceName?: string;
  resourceAttributes: Record<string, string>;
  headers?: Record<string, string>;
  captureContent: boolean;
  traces: boolean;
  metrics: boolean;
  /** OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental: drop the pre-1.37 duplicate attributes. */
  latestGenAi: boolean;
}

const truthy = (v: string | undefined) => v !== undefined && ['1', 'true', 'yes', 'on'].includes(v.trim().toLowerCase());

/** Settings when telemetry is on, or undefined (the common case: nothing is loaded, nothing recorded). */
export function telemetrySettings(cfg: TelemetryConfig, env: NodeJS.ProcessEnv = process.env): TelemetrySettings | undefined {
  if (cfg.enabled === false || truthy(env.OTEL_SDK_DISABLED)) return undefined;
  const envTraces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const envMetrics = env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const traces = Boolean(cfg.endpoint || envTraces) && env.OTEL_TRACES_EXPORTER?.trim() !== 'none';
  const metrics = Boolean(cfg.endpoint || envMetrics) && env.OTEL_METRICS_EXPORTER?.trim() !== 'none' && cfg.metrics !== false;
  if (!traces && !metrics) return undefined;
  const rawProtocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || env.OTEL_EXPORTER_OTLP_PROTOCOL || cfg.protocol || 'http/protobuf').trim();
  if (!(OTLP_PROTOCOLS as readonly string[]).includes(rawProtocol)) {
    throw new ConfigError(`OTEL_EXPORTER_OTLP_PROTOCOL: "${rawProtocol}" is not supported (use ${OTLP_PROTOCOLS.join(' or ')}; grpc is not built in)`);
  }
  const optIn = (env.OTEL_SEMCONV_STABILITY_OPT_IN ?? '').split(',').map((s) => s.trim());
  return {
    endpoint: cfg.endpoint,
    protocol: rawProtocol as OtlpProtocol,
    serviceName: cfg.serviceName,
    resourceAttributes: cfg.resourceAttributes ?? {},
    headers: cfg.headers,
    captureContent: truthy(env.OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT) || cfg.captureContent === true,
    traces,
    metrics,
    latestGenAi: optIn.includes('gen_ai_latest_experimental'),
  };
}
