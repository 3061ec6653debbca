/**
 * Logging: pino JSON for operational logs. The audit stream (one hash-chained JSON record per
 * decision) is in src/audit/. Nothing here ever receives key material: callers log SPIFFE IDs,
 * serials, reasons.
 */
import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino';

export function createLogger(opts: { level?: string; name?: string; destination?: DestinationStream } = {}): PinoLogger {
  return pino(
    {
      level: opts.level ?? 'info',
      base: opts.name ? { sidecar: opts.name } : {},
      timestamp: pino.stdTimeFunctions.isoTime,
      // Defence in depth: these fields must never reach a log line.
      redact: { paths: ['key', 'privateKey', '*.privateKey', 'keyPem', '*.keyPem', 'token', 'authorization'], censor: '[redacted]' },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
