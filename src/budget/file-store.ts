/**
 * BudgetStore on local disk: an append-only, fsync'd journal plus a periodically compacted
 * snapshot, for a sidecar that alone spends its agents' budgets.
 *
 * Files in the ledger directory (0700; files 0600):
 *   ledger.snapshot           `{version:1, journal:<g>, totals:{key: micros}}`, replaced atomically
 *   ledger.<g>.journal        records appended since that snapshot (format: journal.ts)
 *   ledger.lock               the owning process (ledger-lock.ts)
 *
 * Charges are decided and counted synchronously in memory, in call order (so concurrent charges
 * cannot both slip under the limit), then appended. Group commit: everything charged while the
 * previous write is in flight (at least one event-loop turn) goes out in one write and one
 * fdatasync, and each promise resolves after the fsync that covers it. A write or fsync error
 * fails the store closed: the affected promises reject, every later charge rejects
 * (`budget_ledger_failed`), and the in-memory increments stay (conservative) until a restart
 * replays what really reached the disk.
 *
 * Compaction after `compactEvery` records: the totals are captured in the same synchronous step
 * that takes the not-yet-written records off the queue (so each charge is in exactly one of
 * snapshot or new journal), journal g+1 is created, the snapshot naming g+1 is written atomically,
 * and journal g is deleted. The taken charges resolve once that snapshot is durable.
 */
import { constants } from 'node:fs';
import { chmod, lstat, mkdir, open, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { SidecarError, errorMessage } from '../errors.js';
import { writeFileAtomic } from '../lib/fs-atomic.js';
import { encodeRecord, encodeSnapshot } from './journal.js';
import { acquireLedgerLock, type LedgerLock } from './ledger-lock.js';
import { journalPath, recoverLedger, SNAPSHOT_FILE } from './ledger-files.js';
import { keyRetentionEndsAt } from './period.js';
import { checkChargeArgs, type BudgetStore, type ChargeResult } from './store.js';
import type { Logger } from '../lib/log.js';

export interface FileBudgetStoreOptions {
  logger?: Logger;
  /** Journal records after which the ledger is compacted into a new snapshot; default 10000. */
  compactEvery?: number;
  /** Clock for record timestamps and for forgetting expired daily/monthly counters at compaction. */
  now?: () => number;
}

export interface FileBudgetStoreStats {
  generation: number;
  journalRecords: number;
  compactions: number;
  /** Bytes of a torn last record dropped when the ledger was opened (0 if none): audit/metric it. */
  repairedBytes: number;
  failed: boolean;
}

interface PendingRecord {
  line: string;
  resolve(): void;
  reject(err: unknown): void;
}

export class FileBudgetStore implements BudgetStore {
  readonly dir: string;
  /** Bytes of a torn last record dropped on open (0 if the journal ended cleanly). */
  readonly repairedBytes: number;
  private readonly logger: Logger | undefined;
  private readonly compactEvery: number;
  private readonly now: () => number;
  private readonly lock: LedgerLock;
  private readonly totals: Map<string, number>;
  private generation: number;
  private journal: FileHandle;
  private journalRecords: number;
  private compactions = 0;
  private pending: PendingRecord[] = [];
  /** The running flush loop, if any; new records join its next batch. */
  private flushing: Promise<void> | undefined;
  private storeFailure: SidecarError | undefined;
  private closed = false;

  private constructor(
    dir: string,
    lock: LedgerLock,
    state: Awaited<ReturnType<typeof recoverLedger>>,
    options: FileBudgetStoreOptions,
  ) {
    this.dir = dir;
    this.lock = lock;
    this.logger = options.logger;
    this.compactEvery = options.compactEvery ?? 10_000;
    this.now = options.now ?? Date.now;
    this.totals = state.totals;
    this.generation = state.generation;
    this.journal = state.journal;
    this.journalRecords = state.journalRecords;
    this.repairedBytes = state.repairedBytes;
  }

  /**
   * Opens (creating if needed) the ledger in `dir`, takes its lock and replays it. Throws
   * SidecarError: `budget_ledger_locked` (another live process owns it), `budget_ledger_corrupt`
   * (damage before the last record, or inconsistent files), `budget_ledger_failed` (I/O).
   */
  static async open(dir: string, options: FileBudgetStoreOptions = {}): Promise<FileBudgetStore> {
    const compactEvery = options.compactEvery ?? 10_000;
    if (!Number.isSafeInteger(compactEvery) || compactEvery < 1) {
      throw new SidecarError('budget_invalid_argument', `compactEvery must be a positive integer, got ${compactEvery}`);
    }
    const abs = path.resolve(dir);
    let lock: LedgerLock;
    try {
      await mkdir(abs, { recursive: true, mode: 0o700 });
      const stats = await lstat(abs);
      if (!stats.isDirectory()) throw new SidecarError('budget_ledger_failed', `${abs} is not a directory`);
      // mkdir's mode is filtered by the umask and ignored for an existing directory.
      await chmod(abs, 0o700).catch((err: unknown) => {
        if ((stats.mode & 0o022) !== 0) throw err; // others could plant files: refuse
        options.logger?.warn({ dir: abs, err: errorMessage(err) }, 'cannot make the budget ledger directory 0700');
      });
      lock = await acquireLedgerLock(abs, options.logger);
    } catch (err) {
      throw asLedgerError(err, `cannot open the budget ledger ${abs}`);
    }
    try {
      const state = await recoverLedger(abs, options.logger);
      const store = new FileBudgetStore(abs, lock, state, options);
      options.logger?.info(
        { dir: abs, generation: state.generation, keys: state.totals.size, records: state.journalRecords },
        'budget ledger opened',
      );
      return store;
    } catch (err) {
      await lock.release().catch(() => undefined);
      throw asLedgerError(err, `cannot open the budget ledger ${abs}`);
    }
  }

  charge(key: string, amountMicros: number, limitMicros: number): Promise<ChargeResult> {
    try {
      checkChargeArgs(key, amountMicros, 'amount', false);
      checkChargeArgs(key, limitMicros, 'limit', false);
      this.checkUsable();
    } catch (err) {
      return Promise.reject(err);
    }
    const spent = this.totals.get(key) ?? 0;
    if (spent >= limitMicros) return Promise.resolve({ ok: false, spentMicros: spent });
    if (amountMicros === 0) return Promise.resolve({ ok: true, spentMicros: spent });
    const next = spent + amountMicros;
    if (!Number.isSafeInteger(next)) return Promise.reject(overflow(key));
    this.totals.set(key, next); // counted now, before any await: later charges see it
    return this.append(key, amountMicros).then(() => ({ ok: true, spentMicros: next }));
  }

  adjust(key: string, deltaMicros: number): Promise<{ spentMicros: number }> {
    try {
      checkChargeArgs(key, deltaMicros, 'delta', true);
      this.checkUsable();
    } catch (err) {
      return Promise.reject(err);
    }
    const next = (this.totals.get(key) ?? 0) + deltaMicros;
    if (!Number.isSafeInteger(next)) return Promise.reject(overflow(key));
    if (deltaMicros === 0) return Promise.resolve({ spentMicros: next });
    this.totals.set(key, next);
    return this.append(key, deltaMicros).then(() => ({ spentMicros: next }));
  }

  peek(key: string): number | undefined {
    return this.totals.get(key);
  }

  entries(): Iterable<[string, number]> {
    return [...this.totals];
  }

  /** Set once a write, fsync or compaction failed; the store refuses charges from then on. */
  get failure(): SidecarError | undefined {
    return this.storeFailure;
  }

  stats(): FileBudgetStoreStats {
    return {
      generation: this.generation,
      journalRecords: this.journalRecords,
      compactions: this.compactions,
      repairedBytes: this.repairedBytes,
      failed: this.storeFailure !== undefined,
    };
  }

  /** Waits for queued records to be written, then closes the journal and releases the lock. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    while (this.flushing) await this.flushing;
    await this.journal.close().catch(() => undefined);
    await this.lock.release();
  }

  private checkUsable(): void {
    if (this.storeFailure) throw this.storeFailure;
    if (this.closed) throw new SidecarError('budget_store_unavailable', `budget ledger ${this.dir} is closed`);
  }

  private append(key: string, delta: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ line: encodeRecord({ k: key, d: delta, t: this.now() }), resolve, reject });
      // Start a flush on the next turn so the rest of this turn's charges share its write and fsync.
      this.flushing ??= new Promise<void>((r) => setImmediate(r)).then(() => this.flushLoop());
    });
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.pending.length > 0 && !this.storeFailure) {
        const batch = this.pending;
        this.pending = [];
        try {
          await writeAll(this.journal, Buffer.from(batch.map((p) => p.line).join(''), 'utf8'));
          await this.journal.datasync();
        } catch (err) {
          this.fail(err, batch);
          break;
        }
        this.journalRecords += batch.length;
        for (const p of batch) p.resolve();
        if (this.journalRecords >= this.compactEvery) await this.compact();
      }
    } finally {
      this.flushing = undefined;
    }
  }

  private async compact(): Promise<void> {
    const oldGeneration = this.generation;
    const generation = oldGeneration + 1;
    // One synchronous step: the queued records are in the totals and go into the snapshot
    // instead of the journal; records queued from here on go to journal g+1.
    const covered = this.pending;
    this.pending = [];
    const now = this.now();
    for (const key of this.totals.keys()) {
      const end = keyRetentionEndsAt(key);
      if (end !== undefined && end <= now) this.totals.delete(key);
    }
    const snapshot = encodeSnapshot(generation, this.totals);
    let journal: FileHandle | undefined;
    try {
      journal = await open(
        journalPath(this.dir, generation),
        constants.O_RDWR | constants.O_APPEND | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
        0o600,
      );
      await writeFileAtomic(path.join(this.dir, SNAPSHOT_FILE), snapshot); // fsyncs the directory too
    } catch (err) {
      await journal?.close().catch(() => undefined);
      this.fail(err, covered);
      return;
    }
    const old = this.journal;
    this.journal = journal;
    this.generation = generation;
    this.journalRecords = 0;
    this.compactions++;
    for (const p of covered) p.resolve();
    await old.close().catch(() => undefined);
    await unlink(journalPath(this.dir, oldGeneration)).catch((err: unknown) => {
      // Harmless: the next open deletes journals older than the snapshot.
      this.logger?.warn({ dir: this.dir, err: errorMessage(err) }, 'cannot delete a compacted budget journal');
    });
    this.logger?.info({ dir: this.dir, generation, keys: this.totals.size }, 'budget ledger compacted');
  }

  /** Fails the store closed and rejects every record not known to be durable. */
  private fail(err: unknown, batch: PendingRecord[]): void {
    this.storeFailure = new SidecarError(
      'budget_ledger_failed',
      `budget ledger ${this.dir} failed to persist (${errorMessage(err)}); refusing charges until restart`,
      { cause: err },
    );
    this.logger?.error({ dir: this.dir, err: errorMessage(err) }, 'budget ledger write failed; failing closed');
    const all = [...batch, ...this.pending];
    this.pending = [];
    for (const p of all) p.reject(this.storeFailure);
  }
}

async function writeAll(fh: FileHandle, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await fh.write(data, offset, data.length - offset);
    offset += bytesWritten;
  }
}

function overflow(key: string): SidecarError {
  return new SidecarError('budget_invalid_argument', `budget total of ${JSON.stringify(key)} would overflow`);
}

function asLedgerError(err: unknown, what: string): SidecarError {
  if (err instanceof SidecarError) return err;
  return new SidecarError('budget_ledger_failed', `${what}: ${errorMessage(err)}`, { cause: err });
}
