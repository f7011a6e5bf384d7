// A local OTLP/HTTP receiver for tests: records every export request (path, content type, raw body) and
// decodes OTLP/JSON trace and metric payloads into flat spans and metric names.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface OtlpRequest {
  path: string;
  contentType: string;
  body: Buffer;
}

export interface FlatSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
  events: { name: string; attributes: Record<string, unknown> }[];
  status: { code?: number; message?: string };
  resource: Record<string, unknown>;
}

export interface OtlpReceiver {
  url: string;
  requests: OtlpRequest[];
  spans(): FlatSpan[];
  /** Metric data points: name → list of point attributes (+ value). */
  metrics(): Map<string, { attributes: Record<string, unknown>; value: unknown }[]>;
  close(): Promise<void>;
}

function anyValue(v: any): unknown {
  if (!v || typeof v !== 'object') return undefined;
  if ('stringValue' in v) return v.stringValue;
  if ('intValue' in v) return Number(v.intValue);
  if ('doubleValue' in v) return v.doubleValue;
  if ('boolValue' in v) return v.boolValue;
  if ('arrayValue' in v) return (v.arrayValue.values ?? []).map(anyValue);
  return undefined;
}

export function attrs(list: any[] | undefined): Record<string, unknown> {
  return Object.fromEntries((list ?? []).map((a: any) => [a.key, anyValue(a.value)]));
}

export async function startOtlpReceiver(port = 0): Promise<OtlpReceiver> {
  const requests: OtlpRequest[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({ path: req.url ?? '', contentType: String(req.headers['content-type'] ?? ''), body: Buffer.concat(chunks) });
      const json = String(req.headers['content-type']).includes('json');
      res.writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-protobuf' });
      res.end(json ? '{}' : undefined);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  // A test that fails before its close() must not keep the process alive (the runner would wait forever).
  server.unref();
  const json = (p: string) => requests.filter((r) => r.path === p && r.contentType.includes('json')).map((r) => JSON.parse(r.body.toString('utf8')));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    spans: () =>
      json('/v1/traces').flatMap((b: any) =>
        (b.resourceSpans ?? []).flatMap((rs: any) =>
          (rs.scopeSpans ?? []).flatMap((ss: any) =>
            (ss.spans ?? []).map((s: any) => ({
              traceId: s.traceId,
              spanId: s.spanId,
              parentSpanId: s.parentSpanId ?? '',
              name: s.name,
              kind: s.kind,
              attributes: attrs(s.attributes),
              events: (s.events ?? []).map((e: any) => ({ name: e.name, attributes: attrs(e.attributes) })),
              status: s.status ?? {},
              resource: attrs(rs.resource?.attributes),
            })),
          ),
        ),
      ),
    metrics: () => {
      const out = new Map<string, { attributes: Record<string, unknown>; value: unknown }[]>();
      for (const b of json('/v1/metrics')) {
        for (const rm of b.resourceMetrics ?? []) for (const sm of rm.scopeMetrics ?? []) for (const m of sm.metrics ?? []) {
          const points = m.sum?.dataPoints ?? m.histogram?.dataPoints ?? m.gauge?.dataPoints ?? [];
          const list = out.get(m.name) ?? [];
          for (const p of points) list.push({ attributes: attrs(p.attributes), value: p.asDouble ?? (p.asInt !== undefined ? Number(p.asInt) : p.sum) });
          out.set(m.name, list);
        }
      }
      return out;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
