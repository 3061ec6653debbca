/**
 * The revocation store: a local list the admin API changes (persisted atomically), plus any
 * number of shared files that several sidecars watch. The effective state is their union.
 *
 * Revocations take effect at once: a mutation swaps in the new in-memory state (and emits
 * 'change') before the disk write starts, so a slow or failing disk never delays enforcement.
 * The returned promise settles when the write is durable; a failed write rejects it but the
 * revocation stays in force (fail closed). Writes are serialised and coalesced: rapid changes
 * share one write, and the file always ends with the latest state.
 */
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { SidecarError, errorMessage } from '../errors.js';
import { watchFiles, type FileWatch } from '../lib/file-watch.js';
import { writeFileAtomic } from '../lib/fs-atomic.js';
import { readCheckedText, removeStaleTempFiles } from './file-read.js';
import { parseLocalList, serializeLocalList } from './local-file.js';
import { runParseJob, type ParseJob } from '../lib/parse-worker.js';
import { ProblemsError } from '../lib/yaml-reader.js';
import type { SharedListJob } from './shared-file.js';
import {
  MAX_PRINCIPAL_LENGTH,
  MAX_REASON_LENGTH,
  REVOKE_ALL,
  RevocationState,
  checkText,
  isoTime,
  newlyRevoked,
  revocationId,
  sameList,
  type RevocationEntry,
  type RevocationList,
} from './state.js';
import type { Logger } from '../lib/log.js';

export interface RevocationStoreOptions {
  /** Where the local list is persisted; without it local revocations last until the process exits. */
  stateFile?: string;
  /** Shared revocation files (YAML or JSON), watched and hot reloaded. */
  sharedFiles?: readonly string[];
  logger: Logger;
  /** Clock (ms since the epoch) for `at` timestamps; default Date.now. */
  now?: () => number;
  /** Quiet period after a shared-file event before re-reading; default 100 ms. */
  debounceMs?: number;
}

export interface RevokeOptions {
  reason: string;
  /** The authenticated principal: 'token' or an admin SPIFFE ID. */
  by: string;
}

export interface RevocationStore {
  on(event: 'change', listener: (state: RevocationState, newlyRevoked: readonly string[]) => void): this;
  on(event: 'error', listener: (err: SidecarError) => void): this;
  once(event: 'change', listener: (state: RevocationState, newlyRevoked: readonly string[]) => void): this;
  once(event: 'error', listener: (err: SidecarError) => void): this;
}

export class RevocationStore extends EventEmitter {
  readonly stateFile: string | undefined;
  readonly sharedFiles: readonly string[];
  private readonly logger: Logger;
  private readonly now: () => number;
  private state: RevocationState;
  private localAll: RevocationEntry | undefined;
  private readonly localById: Map<string, RevocationEntry>;
  /** Last good content of each shared file. */
  private readonly shared: Map<string, RevocationList>;
  private watch: FileWatch | undefined;
  private reloadChain: Promise<unknown> = Promise.resolve();
  /** The write that has not started yet (later changes join it), and the one in progress. */
  private queuedWrite: Promise<void> | undefined;
  private activeWrite: Promise<void> | undefined;
  private writeCount = 0;
  private writeFailureCount = 0;
  private reloadFailureCount = 0;

  private constructor(
    opts: RevocationStoreOptions,
    stateFile: string | undefined,
    local: RevocationList,
    shared: Map<string, RevocationList>,
  ) {
    super();
    this.stateFile = stateFile;
    this.sharedFiles = [...shared.keys()];
    this.logger = opts.logger;
    this.now = opts.now ?? Date.now;
    this.localAll = local.all;
    this.localById = new Map(local.byId);
    this.shared = shared;
    this.state = RevocationState.merge(1, this.lists());
  }

  /**
   * Loads the local state file (missing = empty) and every shared file, then watches the
   * shared files. Throws SidecarError('revocations_unreadable') naming the file when any of
   * them cannot be trusted: a sidecar must not start with revocations silently dropped.
   */
  static async open(opts: RevocationStoreOptions): Promise<RevocationStore> {
    const now = opts.now ?? Date.now;
    const stateFile = opts.stateFile === undefined ? undefined : path.resolve(opts.stateFile);
    let local: RevocationList = { all: undefined, byId: new Map() };
    if (stateFile) {
      const stale = await removeStaleTempFiles(stateFile);
      if (stale > 0) opts.logger.warn({ file: stateFile, removed: stale }, 'removed temp files of an interrupted revocation write');
      const text = await readCheckedText(stateFile, { forbiddenMode: 0o022, followSymlinks: false });
      if (text !== undefined) local = parseLocalList(text, stateFile);
    } else {
      opts.logger.warn({}, 'no revocation state file configured: local revocations will not survive a restart');
    }
    const shared = new Map<string, RevocationList>();
    for (const f of opts.sharedFiles ?? []) {
      const file = path.resolve(f);
      if (shared.has(file)) continue;
      shared.set(file, await readSharedFile(file, now, undefined));
    }
    const store = new RevocationStore(opts, stateFile, local, shared);
    if (shared.size > 0) {
      const reload = () =>
        store.reloadShared().catch((err: unknown) =>
          opts.logger.error({ files: store.sharedFiles, err: errorMessage(err) }, 'shared revocation reload failed'),
        );
      store.watch = watchFiles(store.sharedFiles, () => void reload(), {
        debounceMs: opts.debounceMs ?? 100,
        onError: (err) =>
          opts.logger.error({ files: store.sharedFiles, err: errorMessage(err) }, 'shared revocation watch failed; keeping current lists'),
      });
      // An edit between the first read and the watch start would otherwise go unseen.
      void reload();
    }
    const snapshot = store.state;
    opts.logger.info(
      { stateFile, sharedFiles: store.sharedFiles, revoked: snapshot.size, all: snapshot.all !== undefined, local: store.localById.size },
      'revocations loaded',
    );
    return store;
  }

  /** The effective state (sync, no I/O). */
  current(): RevocationState {
    return this.state;
  }

  /** Successful writes of the state file since opening. */
  get writes(): number {
    return this.writeCount;
  }

  /** State-file writes that failed (the in-memory state stayed in force). */
  get writeFailures(): number {
    return this.writeFailureCount;
  }

  /** Shared-file reloads rejected (unreadable, invalid, missing); the last good content stayed. */
  get reloadFailures(): number {
    return this.reloadFailureCount;
  }

  /** Revokes one SPIFFE ID locally. In force when this returns; the promise settles when durable. */
  revoke(spiffeId: string, opts: RevokeOptions): Promise<RevocationEntry> {
    let entry: RevocationEntry;
    try {
      const id = revocationId(spiffeId);
      const fresh = this.entry(id, opts); // validates the options even when already revoked
      entry = this.localById.get(id) ?? fresh;
      if (!this.localById.has(id)) {
        this.localById.set(id, entry);
        this.update();
      }
    } catch (err) {
      return Promise.reject(err);
    }
    // Written even when nothing changed: a previous failed write may have left the disk behind.
    return this.persist().then(() => entry);
  }

  /** Revokes every peer (kill switch). */
  revokeAll(opts: RevokeOptions): Promise<RevocationEntry> {
    let entry: RevocationEntry;
    try {
      const fresh = this.entry(REVOKE_ALL, opts);
      entry = this.localAll ?? fresh;
      if (!this.localAll) {
        this.localAll = entry;
        this.update();
      }
    } catch (err) {
      return Promise.reject(err);
    }
    return this.persist().then(() => entry);
  }

  /**
   * Removes a local revocation; resolves false when there was none. Refused with
   * SidecarError('revoked_by_shared_list') when a shared file revokes the ID (or everyone):
   * the ID would stay revoked, so the operator must edit that file instead.
   */
  restore(spiffeId: string): Promise<boolean> {
    let removed: boolean;
    try {
      const id = revocationId(spiffeId);
      const file = this.sharedFileRevoking(id);
      if (file) {
        throw new SidecarError(
          'revoked_by_shared_list',
          `${id} is revoked by the shared revocation file ${file}; remove it there (restore only lifts local revocations)`,
        );
      }
      removed = this.localById.delete(id);
      if (removed) this.update();
    } catch (err) {
      return Promise.reject(err);
    }
    return this.persist().then(() => removed);
  }

  /**
   * Lifts the local revoke-all. Individual revocations stay: they were made for a reason of
   * their own and are lifted one by one. Refused when a shared file revokes everyone.
   */
  restoreAll(): Promise<boolean> {
    const file = this.sharedFileRevoking(REVOKE_ALL);
    if (file) {
      return Promise.reject(
        new SidecarError('revoked_by_shared_list', `every peer is revoked by the shared revocation file ${file}; change it there`),
      );
    }
    const removed = this.localAll !== undefined;
    if (removed) {
      this.localAll = undefined;
      this.update();
    }
    return this.persist().then(() => removed);
  }

  /**
   * Re-reads every shared file now (the watcher calls this). A file that cannot be read or
   * is invalid keeps its last good content. Resolves true when the effective state changed.
   */
  reloadShared(): Promise<boolean> {
    const run = this.reloadChain.then(() => this.reloadSharedOnce());
    this.reloadChain = run.catch(() => undefined);
    return run;
  }

  /** Stops watching and waits for a pending write (its failure was already reported). */
  async close(): Promise<void> {
    this.watch?.close();
    this.watch = undefined;
    await this.reloadChain;
    await (this.queuedWrite ?? this.activeWrite)?.catch(() => undefined);
  }

  private async reloadSharedOnce(): Promise<boolean> {
    let changed = false;
    for (const [file, previous] of this.shared) {
      let next: RevocationList;
      try {
        next = await readSharedFile(file, this.now, previous);
      } catch (err) {
        this.reloadFailureCount++;
        const error = err instanceof SidecarError ? err : new SidecarError('revocations_unreadable', errorMessage(err));
        this.logger.error(
          { file, reason: error.reason, err: error.message },
          'shared revocation file rejected; keeping its last good content',
        );
        // An 'error' event without a listener would throw; a bad edit must not crash the sidecar.
        if (this.listenerCount('error') > 0) this.emit('error', error);
        continue;
      }
      if (sameList(previous, next)) continue;
      this.shared.set(file, next);
      changed = true;
      this.logger.info({ file, revoked: next.byId.size, all: next.all !== undefined }, 'shared revocation file reloaded');
    }
    if (changed) this.update();
    return changed;
  }

  private entry(spiffeId: string, opts: RevokeOptions): RevocationEntry {
    const reason = checkText('reason', opts?.reason, MAX_REASON_LENGTH, true);
    const by = checkText('by', opts?.by, MAX_PRINCIPAL_LENGTH, false);
    return Object.freeze({ spiffeId, reason, at: isoTime(this.now()), by, source: 'local' as const });
  }

  private sharedFileRevoking(id: string): string | undefined {
    for (const [file, list] of this.shared) {
      if (list.all || (id !== REVOKE_ALL && list.byId.has(id))) return file;
    }
    return undefined;
  }

  private lists(): RevocationList[] {
    return [{ all: this.localAll, byId: this.localById }, ...this.shared.values()];
  }

  /** Swaps in the new effective state and tells listeners. */
  private update(): void {
    const prev = this.state;
    const next = RevocationState.merge(prev.version + 1, this.lists());
    this.state = next;
    const added = newlyRevoked(prev, next);
    if (added.length) this.logger.warn({ revoked: added.slice(0, 20), count: added.length, version: next.version }, 'revocations in force');
    try {
      this.emit('change', next, added);
    } catch (err) {
      // A throwing listener must not undo or block the revocation itself.
      this.logger.error({ err: errorMessage(err) }, 'revocation change listener failed');
    }
  }

  /** Resolves once a write that started after this call has made the file durable. */
  private persist(): Promise<void> {
    const file = this.stateFile;
    if (!file) return Promise.resolve();
    if (this.queuedWrite) return this.queuedWrite;
    const write = this.writeAfter(file, this.activeWrite);
    this.queuedWrite = write;
    return write;
  }

  private async writeAfter(file: string, previous: Promise<void> | undefined): Promise<void> {
    await previous?.catch(() => undefined);
    // This call's own promise; from here on, changes need a new write (this one takes its snapshot now).
    const self = this.queuedWrite;
    this.queuedWrite = undefined;
    this.activeWrite = self;
    const text = serializeLocalList({ all: this.localAll, byId: this.localById });
    try {
      await writeFileAtomic(file, text, 0o600);
      this.writeCount++;
    } catch (err) {
      this.writeFailureCount++;
      this.logger.error(
        { file, err: errorMessage(err) },
        'revocation state write failed; the revocations stay in force in memory but may not survive a restart',
      );
      throw new SidecarError('revocations_write_failed', `could not persist revocations to ${file}: ${errorMessage(err)}`, {
        cause: err,
      });
    } finally {
      if (this.activeWrite === self) this.activeWrite = undefined;
    }
  }
}

/** Shared lists parse on a worker thread: `parseSharedListJob` in shared-file.ts. */
const SHARED_LIST_PARSE_JOB: ParseJob = Object.freeze({ module: new URL('./shared-file.js', import.meta.url).href, exportName: 'parseSharedListJob' });

async function readSharedFile(file: string, now: () => number, previous: RevocationList | undefined): Promise<RevocationList> {
  // Shared files usually come from a ConfigMap (symlinks, 0644): follow links, refuse world-writable.
  const text = await readCheckedText(file, { forbiddenMode: 0o002, followSymlinks: true });
  if (text === undefined) throw new SidecarError('revocations_unreadable', `shared revocation file ${file} does not exist`);
  // Off the event loop: a large (or hostile) list must not stall requests while it is parsed.
  const list = await runParseJob<RevocationList>(
    SHARED_LIST_PARSE_JOB,
    { text, file, now: now(), previous } satisfies SharedListJob,
    (f) => (f.problems?.length ? new ProblemsError(f.problems, 'revocations_unreadable') : new SidecarError('revocations_unreadable', f.message)),
    'revocations_unreadable',
  );
  // Structured clone drops Object.freeze; entries are shared with every reader of the state.
  for (const entry of list.byId.values()) Object.freeze(entry);
  if (list.all) Object.freeze(list.all);
  return list;
}
