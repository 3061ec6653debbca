/**
 * The hash-chained JSON-lines audit sink (stdout or a file).
 *
 * Hot path: `record()` only appends the record and the time to the batch. No formatting, no
 * hashing, no I/O. Every 32 records (and at the end of the event-loop turn in which a record
 * arrived) the batch is drained: each line is written from a fixed template (format.ts; always
 * ASCII) with its `seq` and `prev`, hashed in order, and copied into a staging buffer outside
 * the V8 heap. At the end of that turn (or when 256 KB are staged) the staged lines are handed
 * to the kernel in one write. Writes happen strictly in order. Nothing is armed while idle.
 *
 * Durability (docs/audit.md): a regular file is written synchronously at the end of the turn
 * (one write(2) into the page cache, no disk wait), so a record is in the kernel before the
 * sidecar handles any further event; a process kill (SIGKILL, crash, OOM) loses at most the
 * records of the turn it interrupts. fdatasync runs on the thread pool at most `flushIntervalMs` (100 ms) after
 * a write: against power loss, the last ~100 ms may be lost. Pipes, FIFOs and stdout may block,
 * so they are written on the thread pool (as soon as the turn ends), in whole lines of at most
 * PIPE_BUF bytes so that several writers sharing a pipe (the dev mesh's four sidecars, pino)
 * never interleave inside a line.
 *
 * Why two steps: pending records are young objects, and whatever is alive when V8 scavenges its
 * young generation is copied (and, the second time, promoted to the old generation). Drained
 * in small groups they are almost never alive then; staged bytes are not on the heap at all.
 *
 * A crash may leave a torn last line; on the next start the sink repairs and audits that (tail.ts). Records are built by callers from
 * SPIFFE IDs, reasons and paths; nothing here ever receives key material.
 */
import { closeSync, writeSync } from 'node:fs';
import { errorMessage } from '../errors.js';
import { lineHash } from './chain.js';
import type { AuditRecord, AuditSink } from './record.js';
import { datasyncFd, forgetAtExit, openAuditTarget, writePendingAtExit } from './target.js';
import { writeAll } from './write.js';
import { asciiJsonString, AuditMembersFormatter, flatAscii, IsoClock } from './format.js';

/** Pending records are drained (formatted, hashed, staged) in groups of at most this many. */
const DRAIN_AT = 32;
/** Staged lines are written when this many bytes wait (or at the interval). */
const STAGE_BYTES = 256 * 1024;
/**
 * Staging buffers whose write completed are kept for reuse, up to this many. Two are in use at
 * a time when writes keep up; a slow disk holds more in flight, and they come back here after.
 */
const MAX_SPARES = 4;
/**
 * Audit bytes not yet written (staged or in a write) past which the sidecar reports not ready:
 * a few seconds of lines at a high request rate. Records are never dropped for it; the disk
 * is behind, and readiness lets the orchestrator send traffic elsewhere until it catches up.
 */
export const AUDIT_BACKLOG_LIMIT_BYTES = 8 * 1024 * 1024;
const PREV_KEY = ',"prev":"';
/** Writes to a pipe of at most this many bytes are atomic (POSIX guarantees 512; Linux 4096). */
const PIPE_ATOMIC_BYTES = 4096;

export interface JsonLinesAuditSinkOptions {
  /** fdatasync at most flushIntervalMs after a write; default true for files (ignored for stdout). */
  fsync?: boolean;
  /** Called once when a write fails; the sink then drops further records (see `failed`). */
  onError?: (err: Error) => void;
  /** Longest time between a write and its fdatasync (files); default 100 ms. */
  flushIntervalMs?: number;
}

export class JsonLinesAuditSink implements AuditSink {
  private readonly fd: number;
  private readonly ownsFd: boolean;
  private doFsync: boolean;
  /** A regular file: written synchronously at the end of each turn (see the header). */
  private readonly regularFile: boolean;
  /** Bytes written since the last fdatasync. */
  private unsynced = false;
  private syncTimer: NodeJS.Timeout | undefined;
  /** The chain's ID (in every line). */
  readonly chain: string;
  private readonly onError: ((err: Error) => void) | undefined;
  /** `","log":"audit","sidecar":NAME,` : closes `prev` and opens the record body. */
  private readonly prefix: string;
  /**
   * The batch: records as given, with the time each was accepted. Lines are written only at
   * drain time, so a pending record is one object for the garbage collector to move, not a
   * tree of string pieces (young-generation GC cost grows with what survives it). The two
   * arrays are allocated once and reused by every batch: fresh ones per drain were themselves
   * survivors whenever a collection caught a batch filling.
   */
  private readonly pending: (AuditRecord | undefined)[] = new Array<AuditRecord | undefined>(DRAIN_AT).fill(undefined);
  private readonly times = new Float64Array(DRAIN_AT);
  private pendingCount = 0;
  /** Drained lines waiting for the next write: `stage[0, staged)`. */
  private stage: Buffer = Buffer.allocUnsafeSlow(STAGE_BYTES);
  private staged = 0;
  /**
   * Staging buffers whose write has completed, for reuse. A buffer dropped instead is garbage
   * outside the V8 heap that V8 frees only at a full collection (a buffer busy for ~100 ms has
   * moved to the old generation, which a sidecar collects rarely); keeping a few lets writes
   * that overlap (a busy disk, a burst) reuse them.
   */
  private readonly spares: Buffer[] = [];
  /** Staging buffers of the standard size allocated so far, the first stage included. */
  private allocatedCount = 1;
  /** Bytes handed to writes that have not completed. */
  private writeBacklog = 0;
  /** seq and hash of the last line hashed (i.e. drained). */
  private drainedSeq: number;
  private headHash: string;
  private writing: Promise<void> = Promise.resolve();
  /** End-of-turn write, armed only while records wait (an idle sidecar is never woken). */
  private immediate: NodeJS.Immediate | undefined;
  private readonly flushIntervalMs: number;
  private readonly onTurnEnd = (): void => {
    this.immediate = undefined;
    this.drainAndWrite();
  };
  private readonly onSyncTimer = (): void => {
    this.syncTimer = undefined;
    this.datasync();
  };
  private closed = false;
  private failure: Error | undefined;
  private droppedCount = 0;
  private readonly clock = new IsoClock();
  private readonly members = new AuditMembersFormatter();

  /**
   * Opens (or creates, 0600) the file and resumes its chain: reads only the tail, repairs a
   * torn last line. Throws (typed) if the tail cannot be read; the sidecar must not start then.
   */
  constructor(target: 'stdout' | string, name?: string, opts: JsonLinesAuditSinkOptions = {}) {
    this.onError = opts.onError;
    const opened = openAuditTarget(target, opts.fsync);
    this.fd = opened.fd;
    this.ownsFd = opened.ownsFd;
    this.doFsync = opened.fsync;
    this.regularFile = opened.regularFile;
    const resume = opened.resume;
    this.chain = resume.chain;
    this.drainedSeq = resume.seq;
    this.headHash = resume.head;
    this.prefix = flatAscii(`","log":"audit"${name ? `,"sidecar":${asciiJsonString(name)}` : ''},"chain":"${resume.chain}",`);
    this.flushIntervalMs = opts.flushIntervalMs ?? 100;
    writePendingAtExit(this);
    for (const note of resume.notes) this.record(note);
    this.drainAndWrite();
  }

  /** Accepts a record; `rec` is kept until it is drained (at most 32 records later or at the end of this turn) and must not be changed. */
  record(rec: AuditRecord): void {
    if (this.closed || this.failure) {
      this.droppedCount++;
      return;
    }
    const n = this.pendingCount;
    this.pending[n] = rec;
    this.times[n] = Date.now();
    this.pendingCount = n + 1;
    if (n + 1 >= DRAIN_AT) this.drain();
    if (this.immediate === undefined) this.immediate = setImmediate(this.onTurnEnd);
  }

  /** Drains and writes synchronously what it can: the process is exiting (no later turn). */
  writePendingNow(): void {
    if (this.closed) return;
    this.drain();
    // Behind an unfinished thread-pool write, a synchronous one could land first: out of order.
    if (this.writeBacklog === 0 && this.staged > 0 && !this.failure) this.writeStagedSync();
  }

  private drainAndWrite(): void {
    this.drain();
    this.writeStaged();
  }

  /**
   * Formats the pending records' lines, hashing them in order (each hash is the next line's
   * prev), into the staging buffer. The group is staged as one string: one copy into the
   * buffer per drain, not one per line.
   */
  private drain(): void {
    const lines = this.pendingCount;
    if (lines === 0) return;
    const pending = this.pending;
    const times = this.times;
    this.pendingCount = 0;
    let seq = this.drainedSeq;
    let prev = this.headHash;
    let text = '';
    for (let i = 0; i < lines; i++) {
      const rec = pending[i]!;
      pending[i] = undefined; // formatted: the record is garbage now, not held until overwritten
      const line = `{"time":"${this.clock.format(times[i]!)}","seq":${++seq}${PREV_KEY}${prev}${this.prefix}${this.members.format(rec)}}`;
      prev = lineHash(line);
      text += `${line}\n`;
    }
    this.headHash = prev;
    this.drainedSeq = seq;
    this.stageText(text);
  }

  /** Copies lines (each with its newline) into the staging buffer (lines are ASCII: format.ts). */
  private stageText(text: string): void {
    const bytes = text.length;
    if (this.staged + bytes > this.stage.length) {
      this.writeStaged();
      if (bytes > this.stage.length) {
        // Huge lines: a buffer of their size, once; the standard one goes back for reuse.
        if (this.stage.length === STAGE_BYTES && this.spares.length < MAX_SPARES) this.spares.push(this.stage);
        this.stage = Buffer.allocUnsafeSlow(bytes);
      }
    }
    this.staged += this.stage.write(text, this.staged, 'latin1');
  }

  private allocateStage(): Buffer {
    this.allocatedCount++;
    return Buffer.allocUnsafeSlow(STAGE_BYTES);
  }

  /** Hands the staged bytes to the OS after the previous write; staging continues in another buffer. */
  private writeStaged(): void {
    if (this.staged === 0) return;
    if (this.failure) {
      this.staged = 0;
      return;
    }
    if (this.regularFile && this.writeBacklog === 0) {
      this.writeStagedSync();
      return;
    }
    const full = this.stage;
    const data = full.subarray(0, this.staged);
    this.stage = this.spares.pop() ?? this.allocateStage();
    this.staged = 0;
    this.writeBacklog += data.length;
    this.writing = this.writing.then(async () => {
      await this.writeBatch(data);
      this.writeBacklog -= data.length;
      if (full.length === STAGE_BYTES && this.spares.length < MAX_SPARES) this.spares.push(full);
    });
  }

  /** One write(2) into the page cache: no disk wait (fdatasync follows on the thread pool). */
  private writeStagedSync(): void {
    // Offsets into the staging buffer, not a subarray: a view would be an allocation every turn.
    const stage = this.stage;
    const length = this.staged;
    this.staged = 0;
    try {
      for (let off = 0; off < length; ) off += writeSync(this.fd, stage, off, length - off);
      this.wrote();
    } catch (err) {
      this.fail(err);
    }
  }

  private async writeBatch(data: Buffer): Promise<void> {
    if (this.failure) return;
    try {
      await writeAll(this.fd, data, this.regularFile ? data.length : PIPE_ATOMIC_BYTES);
      this.wrote();
    } catch (err) {
      this.fail(err);
    }
  }

  /** The file now ends mid-chain (maybe with a torn line): stop rather than write past a gap. */
  private fail(err: unknown): void {
    if (this.failure) return;
    // The next start repairs the tail; the gap shows as a seq gap.
    this.failure = err instanceof Error ? err : new Error(errorMessage(err));
    this.onError?.(this.failure);
  }

  /** Arms the fdatasync that makes the written bytes durable against power loss. */
  private wrote(): void {
    if (!this.doFsync) return;
    this.unsynced = true;
    if (this.syncTimer === undefined && !this.closed) {
      this.syncTimer = setTimeout(this.onSyncTimer, this.flushIntervalMs);
      this.syncTimer.unref();
    }
  }

  /** Queues an fdatasync after the writes before it. */
  private datasync(): Promise<void> {
    this.writing = this.writing.then(async () => {
      if (!this.unsynced || this.failure || !this.doFsync) return;
      this.unsynced = false;
      try {
        await this.fsyncFd();
      } catch (err) {
        this.fail(err);
      }
    });
    return this.writing;
  }

  private async fsyncFd(): Promise<void> {
    if (!(await datasyncFd(this.fd))) this.doFsync = false;
  }

  /** The last drained record and the chain's ID: give these to something outside this host to anchor the log. */
  head(): { seq: number; hash: string; chain: string } {
    return { seq: this.drainedSeq, hash: this.headHash, chain: this.chain };
  }

  /** Staging buffers allocated so far and kept for reuse now (diagnostics and tests). */
  get stagingBuffers(): { allocated: number; spare: number } {
    return { allocated: this.allocatedCount, spare: this.spares.length };
  }

  /** Drained bytes not yet written: staged, or handed to a write that has not completed. */
  get backlogBytes(): number {
    return this.writeBacklog + this.staged;
  }

  /**
   * The sidecar's readiness check for its audit trail: not ready once a write failed (the sink
   * has stopped) or while more than AUDIT_BACKLOG_LIMIT_BYTES wait to be written.
   */
  readiness(): { ok: boolean; detail: string } {
    if (this.failure) return { ok: false, detail: `audit trail write failed: ${this.failure.message}` };
    const backlog = this.backlogBytes;
    if (backlog > AUDIT_BACKLOG_LIMIT_BYTES) {
      return { ok: false, detail: `audit writes are ${mib(backlog)} MiB behind (limit ${mib(AUDIT_BACKLOG_LIMIT_BYTES)} MiB)` };
    }
    return { ok: true, detail: `seq ${this.drainedSeq}` };
  }

  /** The write error that stopped the sink, if any. */
  get failed(): Error | undefined {
    return this.failure;
  }

  /** Records refused because the sink was closed or failed. */
  get dropped(): number {
    return this.droppedCount;
  }

  /** Writes (and fdatasyncs, for files) everything recorded so far; e.g. right after an admin action. */
  async sync(): Promise<void> {
    this.drainAndWrite();
    clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    await this.datasync();
  }

  /** Drains, fsyncs and closes; later records are dropped. */
  async flush(): Promise<void> {
    if (this.closed) return;
    clearImmediate(this.immediate);
    this.immediate = undefined;
    this.drainAndWrite();
    this.closed = true;
    forgetAtExit(this);
    clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    await this.writing;
    if (this.ownsFd) {
      if (!this.failure) await this.fsyncFd().catch(() => undefined);
      closeSync(this.fd);
    }
  }
}

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}
