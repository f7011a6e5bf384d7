// Diagnostics go to stderr only: when serving stdio, stdout belongs to the MCP protocol.
import winston from 'winston';

export const log = winston.createLogger({
  level: process.env.DELEGATE_MCP_LOG_LEVEL ?? 'info',
  format: winston.format.combine(
    winston.format.timestamp(),
    winston.format.printf(({ timestamp, level, message, ...rest }) => {
      const extra = Object.keys(rest).length ? ' ' + JSON.stringify(rest) : '';
      return `${timestamp} delegate-mcp ${level}: ${message}${extra}`;
    }),
  ),
  // stderrLevels covers every level so nothing is ever written to stdout.
  transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] })],
});

const warned = new Set<string>();
/** Logs a warning the first time this exact message comes (SDK deprecation notices repeat on every call). */
export function warnOnce(message: string): void {
  if (warned.has(message)) return;
  if (warned.size < 1000) warned.add(message);
  log.warn(message);
}

/**
 * A warning that anyone able to send the message can repeat (a forged message on a Redis channel): at
 * most one line per `everyMs`, the next one saying how many were left out, so a flood cannot fill the log.
 */
export function throttledWarn(everyMs = 10_000): (message: string) => void {
  let last = 0;
  let dropped = 0;
  return (message) => {
    const now = Date.now();
    if (now - last < everyMs) {
      dropped++;
      return;
    }
    log.warn(dropped ? `${message} (and ${dropped} more like it in the last ${Math.round((now - last) / 1000)} s)` : message);
    last = now;
    dropped = 0;
  };
}
