#!/usr/bin/env node
// The command line's entry (dist/cli.js). `serve` starts the agent-run threads first, before the rest
// of the CLI (src/cli.ts) loads: a worker then loads its own bundle (the provider SDKs) while this
// thread loads the CLI, and is warm before a client's first call instead of loading during it.
import { startPoolEarly } from './orchestrator/pool-start.js';

if (process.argv[2] === 'serve') startPoolEarly();
await import('./cli.js');
