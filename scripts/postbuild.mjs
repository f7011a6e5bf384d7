// Make the CLI entry executable so `npm link` / the bin shim can run it directly.
import { chmodSync, existsSync } from 'node:fs';
if (existsSync('dist/cli.js')) chmodSync('dist/cli.js', 0o755);
