/**
 * Where the audit sink writes: opening its file (or stdout) and resuming the chain from the
 * file's tail, fdatasync that tolerates descriptors which cannot be synced, and the exit hook
 * that writes out records still pending when the process exits.
 */
import { closeSync, constants, fdatasync, fstatSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { freshChain, resumeChain, type ChainResume } from './tail.js';
import { syncDirBestEffort } from './write.js';

export interface OpenedAuditTarget {
  readonly fd: number;
  /** The sink closes the descriptor (a file), not stdout. */
  readonly ownsFd: boolean;
  readonly fsync: boolean;
  readonly regularFile: boolean;
  readonly resume: ChainResume;
}

/** Opens (or creates, 0600) the file and reads its tail to resume the chain; stdout starts a fresh chain. */
export function openAuditTarget(target: 'stdout' | string, fsync: boolean | undefined): OpenedAuditTarget {
  if (target === 'stdout') return { fd: 1, ownsFd: false, fsync: false, regularFile: false, resume: freshChain() };
  const dir = path.dirname(target);
  mkdirSync(dir, { recursive: true });
  const fd = openSync(target, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT, 0o600);
  try {
    const stats = fstatSync(fd);
    if (stats.size === 0) syncDirBestEffort(dir); // a new file's directory entry must survive a crash too
    return { fd, ownsFd: true, fsync: fsync ?? true, regularFile: stats.isFile(), resume: resumeChain(fd, stats.size) };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/** fdatasync on the thread pool; resolves false when the descriptor cannot be synced. */
export async function datasyncFd(fd: number): Promise<boolean> {
  try {
    await new Promise<void>((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
    return true;
  } catch (err) {
    // Character devices and pipes (e.g. a target of /dev/stderr) cannot be fsync'd.
    if ((err as NodeJS.ErrnoException).code === 'EINVAL' || (err as NodeJS.ErrnoException).code === 'ENOTSUP') return false;
    throw err;
  }
}

interface PendingWriter {
  writePendingNow(): void;
}

/** Open sinks, written out synchronously if the process exits with records still pending. */
const openSinks = new Set<PendingWriter>();
let exitHookInstalled = false;

export function writePendingAtExit(sink: PendingWriter): void {
  openSinks.add(sink);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', writePendingOnExit);
  }
}

export function forgetAtExit(sink: PendingWriter): void {
  openSinks.delete(sink);
}

function writePendingOnExit(): void {
  for (const sink of openSinks) sink.writePendingNow();
}
