// Per-call cost of telemetry: runs bench/ab-calls.ts with three variants — a build without telemetry
// code (BASE_CLI, e.g. main's dist/cli.js), this build with telemetry off, and this build exporting
// traces and metrics (OTLP http/protobuf) to a local receiver that accepts and drops everything.
//
//   BASE_CLI=/path/to/main/dist/cli.js node --import tsx bench/telemetry-overhead.ts [calls=600] [block=50]
import { spawn } from 'node:child_process';
import path from 'node:path';
import { ROOT } from '../tests/helpers.js';
import { startOtlpReceiver } from '../tests/otlp-receiver.js';

const rx = await startOtlpReceiver();
const variants = [
  ...(process.env.BASE_CLI ? [{ name: 'base (no telemetry code)', cli: process.env.BASE_CLI }] : []),
  { name: 'telemetry off' },
  { name: 'telemetry on (OTLP protobuf)', delegate: { telemetry: { endpoint: rx.url } } },
];
const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', 'ab-calls.ts'), JSON.stringify(variants), process.argv[2] ?? '600', process.argv[3] ?? '50'], {
  stdio: 'inherit',
  cwd: ROOT,
});
const code = await new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
const spans = rx.requests.filter((r) => r.path === '/v1/traces').length;
process.stdout.write(`receiver: ${spans} trace export request(s), ${rx.requests.length - spans} metric export request(s)\n`);
await rx.close();
process.exit(code);
