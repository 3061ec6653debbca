/**
 * Logging: pino JSON for operational logs, and a separate audit stream with one JSON record per
 * decision. Nothing here ever receives key material: callers log SPIFFE IDs, serials, reasons.
 */
import { closeSync, mkdirSync, openSync, write } from 'node:fs';
import path from 'node:path';
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

export function createLogger(opts: { level?: string; name?: string; destination?: DestinationStream } = {}): Logger {
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

/** One audit record: what was decided, for whom, and why (reason codes match metrics). */
export interface AuditRecord {
  type: 'inbound_decision' | 'outbound_decision' | 'peer_rejected';
  decision: 'allow' | 'deny' | 'error';
  reason: string;
  peer?: string;
  method?: string;
  path?: string;
  action?: string;
  route?: string;
  status?: number;
  latency_ms?: number;
  detail?: string;
}

export interface AuditSink {
  record(rec: AuditRecord): void;
  flush(): Promise<void>;
}

/**
 * Audit records as JSON lines (`{"time": ISO, "log": "audit", "sidecar": name, ...record}`).
 *
 * Hot-path cost matters: each line is built with V8's native JSON.stringify and appended to an
 * in-memory batch; batches go out in one write every 100 ms or 64 KiB, in order, and a final
 * synchronous flush on close. (Generic loggers re-measure their whole pending buffer on every
 * write; at thousands of decisions per second that was most of the audit cost.) Durable,
 * fsync'd, hash-chained audit comes with issue 4.
 */
export class JsonLinesAuditSink implements AuditSink {
  private readonly fd: number;
  private readonly ownsFd: boolean;
  private readonly prefix: string;
  /** Lines are copied into this buffer as they come (no strings retained between flushes). */
  private buf = Buffer.allocUnsafe(BATCH_BYTES);
  private used = 0;
  private writing: Promise<void> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(target: 'stdout' | string, name?: string) {
    if (target === 'stdout') {
      this.fd = 1;
      this.ownsFd = false;
    } else {
      mkdirSync(path.dirname(target), { recursive: true });
      this.fd = openSync(target, 'a', 0o600);
      this.ownsFd = true;
    }
    this.prefix = `","log":"audit"${name ? `,"sidecar":${JSON.stringify(name)}` : ''},`;
    this.timer = setInterval(() => this.drain(), 100);
    this.timer.unref();
  }

  private lastMs = 0;
  private lastIso = '';

  record(rec: AuditRecord): void {
    if (this.closed) return;
    const now = Date.now();
    if (now !== this.lastMs) {
      this.lastMs = now;
      this.lastIso = new Date(now).toISOString(); // once per millisecond, not per record
    }
    const line = `{"time":"${this.lastIso}${this.prefix}${JSON.stringify(rec).slice(1)}\n`;
    // Worst case 3 bytes per UTF-16 unit; a line that cannot fit goes out with the batch.
    if (this.used + line.length * 3 > this.buf.length) {
      this.drain();
      if (line.length * 3 > this.buf.length) {
        this.queue(Buffer.from(line, 'utf8'));
        return;
      }
    }
    this.used += this.buf.write(line, this.used, 'utf8');
  }

  /** Hands the current batch to the OS, after the previous one (writes stay in order). */
  private drain(): void {
    if (this.used === 0) return;
    const data = this.buf.subarray(0, this.used);
    this.buf = Buffer.allocUnsafe(BATCH_BYTES);
    this.used = 0;
    this.queue(data);
  }

  private queue(data: Buffer): void {
    this.writing = this.writing.then(() => writeAll(this.fd, data)).catch(() => undefined);
  }

  async flush(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.drain();
    await this.writing;
    if (this.ownsFd) closeSync(this.fd);
  }
}

const BATCH_BYTES = 64 * 1024;

function writeAll(fd: number, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (offset: number) => {
      if (offset >= data.length) return resolve();
      write(fd, data, offset, data.length - offset, null, (err, n) => (err ? reject(err) : step(offset + n)));
    };
    step(0);
  });
}

/** Collects records in memory; for tests and for sidecars that disable auditing. */
export class MemoryAuditSink implements AuditSink {
  readonly records: AuditRecord[] = [];
  record(rec: AuditRecord): void {
    this.records.push(rec);
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
}
