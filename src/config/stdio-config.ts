// `delegate.stdio` in mcp.json: limits of the stdio transport and how `serve` drains on a signal.
import { z } from 'zod';

export const STDIO_DEFAULTS = {
  /** The SDK's own default read limit: 10 MiB per message. */
  maxMessageBytes: 10 * 1024 * 1024,
  shutdownGraceS: 10,
} as const;

export const StdioConfigSchema = z
  .strictObject({
    /** Largest JSON-RPC message read from stdin; a longer one is skipped and answered with an error. */
    maxMessageBytes: z.number().int().min(1024).default(STDIO_DEFAULTS.maxMessageBytes),
    /** On SIGTERM/SIGINT, how long running runs may go on before they are cancelled. */
    shutdownGraceS: z.number().min(0).default(STDIO_DEFAULTS.shutdownGraceS),
  })
  .default({ ...STDIO_DEFAULTS });

export type StdioConfig = z.infer<typeof StdioConfigSchema>;
