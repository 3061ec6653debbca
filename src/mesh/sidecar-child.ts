/**
 * DEVELOPMENT ONLY: one dev mesh sidecar as its own `attest-sidecar run` process, under a node
 * binary of its own (its SPIRE identity is that binary's path). Its output is forwarded line by
 * line to ours (log lines below the mesh's level dropped), the tail of its stderr is kept to say
 * why it died, and the addresses its listeners announce are recorded (with free ports they are
 * known only from there). It runs in a process group of its own, so that a terminal's Ctrl-C
 * reaches only the dev command, which stops every child by pid in order.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { SidecarError } from '../errors.js';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/attest-sidecar');
const STDERR_TAIL_CHARS = 4000;
/** A longer line is forwarded as it is, unparsed. */
const MAX_PARSED_LINE = 64 * 1024;
/** Bound on the bytes buffered while waiting for a newline. */
const MAX_PENDING = 1 << 20;

/** Children still running: killed if this process exits without stopping them (a crash, process.exit). */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function track(proc: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const child of live) child.kill('SIGKILL');
    });
  }
  live.add(proc);
  proc.once('exit', () => live.delete(proc));
  proc.once('error', () => live.delete(proc));
}

export type ListenerKind = 'admin' | 'outbound' | 'inbound';

/** The log messages with which a sidecar announces a bound listener (`address` field). */
const ANNOUNCEMENTS: Readonly<Record<string, ListenerKind>> = Object.assign(Object.create(null) as Record<string, ListenerKind>, {
  'admin listening': 'admin',
  'outbound proxy listening': 'outbound',
  'inbound mTLS listener up': 'inbound',
});

/** Numeric pino levels, for dropping forwarded lines below the mesh's level. */
const LEVELS: Readonly<Record<string, number>> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

/** The level a child runs at: at most info, because its listeners are announced at info. */
export function childLogLevel(level: string): string {
  return (LEVELS[level] ?? 30) < 30 ? level : 'info';
}

export interface SidecarChildOptions {
  name: string;
  /** The node binary to run it with (a linked copy: its identity). */
  node: string;
  configFile: string;
  cwd: string;
  /** The mesh's log level: lower log lines of the child are not forwarded. */
  logLevel: string;
  stdout: Writable;
  stderr: Writable;
}

export class SidecarChild {
  readonly name: string;
  readonly listening: Partial<Record<ListenerKind, AddressInfo>> = {};
  /** Resolves with how it ended ("exited with 1", "killed by SIGKILL", "could not start: ..."). */
  readonly exited: Promise<string>;
  private readonly proc: ChildProcess;
  private readonly threshold: number;
  private ending: string | undefined;
  private tail = '';
  private announced: (() => void) | undefined;

  constructor(o: SidecarChildOptions) {
    this.name = o.name;
    this.threshold = LEVELS[o.logLevel] ?? 30;
    this.proc = spawn(o.node, [BIN, 'run', '--config', o.configFile], { cwd: o.cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    track(this.proc);
    this.exited = new Promise((resolve) => {
      this.proc.once('error', (err) => {
        this.ending ??= `could not start: ${err.message}`;
        resolve(this.ending);
      });
      this.proc.once('exit', (code, signal) => {
        this.ending = signal ? `killed by ${signal}` : `exited with ${code}`;
        resolve(this.ending);
      });
    });
    this.forward(this.proc.stdout!, o.stdout, false);
    this.forward(this.proc.stderr!, o.stderr, true);
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  /** undefined while it runs; else how it ended. */
  get ended(): string | undefined {
    return this.ending;
  }

  /** How it ended (or that it runs) and the end of its stderr. */
  describe(): string {
    const tail = this.tail.trim();
    return `sidecar '${this.name}' (pid ${this.pid ?? '-'}) ${this.ending ?? 'is running'}; ${tail ? `its stderr ends with:\n${tail}` : 'it wrote nothing to stderr'}`;
  }

  /** Resolves once every listener of `kinds` has announced its address; rejects if the child ends first or after `timeoutMs`. */
  async untilListening(kinds: readonly ListenerKind[], timeoutMs: number): Promise<void> {
    const missing = () => kinds.filter((k) => !this.listening[k]);
    if (missing().length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        new Promise<void>((resolve) => {
          this.announced = () => {
            if (missing().length === 0) resolve();
          };
        }),
        this.exited.then((how) => Promise.reject(new SidecarError('dev_spire_failed', `sidecar '${this.name}' ${how} during start-up: ${this.describe()}`))),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new SidecarError('dev_spire_failed', `sidecar '${this.name}': no ${missing().join(', ')} listener after ${timeoutMs} ms: ${this.describe()}`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
      this.announced = undefined;
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it is gone. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.ending !== undefined || this.proc.pid === undefined) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Forwards `from` to `to` line by line, pausing while `to` is full. */
  private forward(from: Readable, to: Writable, isStderr: boolean): void {
    let pending = '';
    from.setEncoding('utf8');
    from.on('data', (chunk: string) => {
      if (isStderr) this.tail = (this.tail + chunk).slice(-STDERR_TAIL_CHARS);
      pending += chunk;
      let out = '';
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (this.keep(line)) out += line + '\n';
      }
      if (pending.length > MAX_PENDING) {
        out += pending;
        pending = '';
      }
      if (out && !to.write(out)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    });
    from.on('end', () => {
      if (pending && this.keep(pending)) to.write(pending + '\n');
    });
    from.on('error', () => undefined);
  }

  /** Records a listener announcement; false for a log line below the mesh's level. */
  private keep(line: string): boolean {
    if (line.length > MAX_PARSED_LINE || !line.startsWith('{"level":')) return true;
    let record: { level?: unknown; msg?: unknown; address?: AddressInfo };
    try {
      record = JSON.parse(line) as typeof record;
    } catch {
      return true;
    }
    const kind = typeof record.msg === 'string' ? ANNOUNCEMENTS[record.msg] : undefined;
    if (kind && record.address && typeof record.address.port === 'number') {
      this.listening[kind] = record.address;
      this.announced?.();
    }
    return typeof record.level !== 'number' || record.level >= this.threshold;
  }
}
