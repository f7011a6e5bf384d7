// Telemetry settings: off unless an endpoint is given; the standard OTEL_* variables and mcp.json.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TelemetryConfigSchema, telemetrySettings } from '../src/config/telemetry-config.js';

const none = TelemetryConfigSchema.parse({});

describe('telemetrySettings', () => {
  it('is off with no endpoint, whatever else is set', () => {
    assert.equal(telemetrySettings(none, {}), undefined);
    assert.equal(telemetrySettings(none, { OTEL_SERVICE_NAME: 'x', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }), undefined);
  });
  it('turns on with OTEL_EXPORTER_OTLP_ENDPOINT; protobuf by default; per-signal endpoints pick the signals', () => {
    const s = telemetrySettings(none, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' })!;
    assert.equal(s.protocol, 'http/protobuf');
    assert.equal(s.traces, true);
    assert.equal(s.metrics, true);
    assert.equal(s.captureContent, false);
    const t = telemetrySettings(none, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://x/v1/traces' })!;
    assert.deepEqual([t.traces, t.metrics], [true, false]);
    const m = telemetrySettings(none, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x', OTEL_TRACES_EXPORTER: 'none' })!;
    assert.deepEqual([m.traces, m.metrics], [false, true]);
  });
  it('OTEL_SDK_DISABLED and enabled: false win', () => {
    assert.equal(telemetrySettings(none, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x', OTEL_SDK_DISABLED: 'true' }), undefined);
    assert.equal(telemetrySettings(TelemetryConfigSchema.parse({ enabled: false, endpoint: 'http://x' }), { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x' }), undefined);
  });
  it('mcp.json settings; the environment overrides the protocol; content capture by either', () => {
    const cfg = TelemetryConfigSchema.parse({ endpoint: 'http://c:4318', protocol: 'http/json', serviceName: 'svc', captureContent: true });
    const s = telemetrySettings(cfg, {})!;
    assert.deepEqual([s.endpoint, s.protocol, s.serviceName, s.captureContent], ['http://c:4318', 'http/json', 'svc', true]);
    assert.equal(telemetrySettings(cfg, { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' })!.protocol, 'http/protobuf');
    assert.equal(telemetrySettings(none, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x', OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: 'true' })!.captureContent, true);
  });
  it('honours OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental', () => {
    assert.equal(telemetrySettings(none, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x' })!.latestGenAi, false);
    assert.equal(telemetrySettings(none, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x', OTEL_SEMCONV_STABILITY_OPT_IN: 'http, gen_ai_latest_experimental' })!.latestGenAi, true);
  });
  it('refuses grpc with a precise message', () => {
    assert.throws(() => telemetrySettings(none, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }), /OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" is not supported \(use http\/protobuf or http\/json/);
    assert.equal(TelemetryConfigSchema.safeParse({ endpoint: 'not a url' }).success, false);
    assert.equal(TelemetryConfigSchema.safeParse({ sampling: 1 }).success, false);
  });
});
