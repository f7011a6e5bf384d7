// `delegate.http` in mcp.json: how `serve --http` listens, who may talk to it, and its limits.
// Kept apart from config.ts: the HTTP transport (transports/) reads these; config.ts only mounts the schema.
import { z } from 'zod';

export const HTTP_DEFAULTS = {
  host: '127.0.0.1',
  port: 8808,
  maxBodyBytes: 4 * 1024 * 1024,
  maxSessions: 64,
  maxRunsPerSession: 32,
  shutdownGraceS: 10,
  sessionIdleS: 900,
  resumeGraceS: 30,
} as const;

export const HttpConfigSchema = z
  .strictObject({
    /** Interface to bind; loopback by default. Anything else requires a token. */
    host: z.string().min(1).default(HTTP_DEFAULTS.host),
    /** TCP port; 0 picks a free one (the bound address is printed on stderr). */
    port: z.number().int().min(0).max(65535).default(HTTP_DEFAULTS.port),
    /** Bearer token every request must carry (prefer DELEGATE_MCP_TOKEN: keeps it out of files). */
    token: z.string().min(1).optional(),
    /** Largest request body accepted (413 beyond). */
    maxBodyBytes: z.number().int().min(1024).default(HTTP_DEFAULTS.maxBodyBytes),
    /** Open 2025-era sessions plus legacy SSE connections at once (429 beyond). */
    maxSessions: z.number().int().min(1).default(HTTP_DEFAULTS.maxSessions),
    /** Runs one session may have running at once (429 for a further call; fan-out tasks wait for a slot). */
    maxRunsPerSession: z.number().int().min(1).default(HTTP_DEFAULTS.maxRunsPerSession),
    /** On SIGTERM/SIGINT, how long running runs may go on before they are cancelled. */
    shutdownGraceS: z.number().min(0).default(HTTP_DEFAULTS.shutdownGraceS),
    /**
     * 2025-era Streamable HTTP: a client whose response stream drops may resume it (Last-Event-ID)
     * within this many seconds before its call is cancelled; 0 cancels at once (no event store).
     */
    resumeGraceS: z.number().min(0).default(HTTP_DEFAULTS.resumeGraceS),
    /** A session with no open request, no open stream and no running run is closed after this long. */
    sessionIdleS: z.number().positive().default(HTTP_DEFAULTS.sessionIdleS),
    /** Extra Host header names to accept (e.g. a DNS name when bound beyond loopback). */
    allowedHosts: z.array(z.string().min(1)).default([]),
    /** Extra Origin host names to accept besides localhost (browser-based clients). */
    allowedOrigins: z.array(z.string().min(1)).default([]),
  })
  .default({ ...HTTP_DEFAULTS, allowedHosts: [], allowedOrigins: [] });

export type HttpConfig = z.infer<typeof HttpConfigSchema>;
