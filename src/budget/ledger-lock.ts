/**
 * One process owns a ledger directory: two writers appending to one journal would each replay
 * only their own view of the totals and overspend.
 *
 * The lock is `dir/ledger.lock`, holding `{"pid":..,"hostname":..}`. It is created atomically
 * complete: written and fsync'd under a temporary name, then hard-linked into place (link fails
 * with EEXIST if the lock exists). A lock whose pid is no longer alive is stale (the owner was
 * killed) and is taken over; so is a lock naming our own pid that this process does not hold (a
 * restarted container reuses its pid). Limits: pids are only meaningful inside one pid namespace,
 * so exclusivity across pods is the volume's job (ReadWriteOnce); two processes taking over the
 * same stale lock at the same instant could both win. A lock file that cannot be read is treated
 * as held (fail closed): remove it by hand once sure no sidecar uses the directory.
 */
import { constants } from 'node:fs';
import { link, open, readFile, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import path from 'node:path';
import { SidecarError, errorMessage } from '../errors.js';
import { syncDir } from '../lib/fs-atomic.js';
import type { Logger } from '../lib/log.js';

export const LOCK_FILE = 'ledger.lock';

export interface LedgerLock {
  readonly file: string;
  release(): Promise<void>;
}

/** Lock files held by this process (a second open in the same process must fail too). */
const heldHere = new Set<string>();

export async function acquireLedgerLock(dir: string, logger?: Logger): Promise<LedgerLock> {
  const file = path.join(dir, LOCK_FILE);
  const content = `${JSON.stringify({ pid: process.pid, hostname: hostname() })}\n`;
  const tmp = path.join(dir, `.${LOCK_FILE}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await fh.writeFile(content);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await link(tmp, file);
        heldHere.add(file);
        await syncDir(dir);
        return { file, release: () => releaseLock(file, content) };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const holder = await readHolder(file);
      if (holder === 'gone') continue;
      if (holder === undefined) {
        throw new SidecarError('budget_ledger_locked', `${file} exists but is unreadable; remove it if no sidecar uses ${dir}`);
      }
      const ours = holder.pid === process.pid;
      if ((ours && heldHere.has(file)) || (!ours && pidAlive(holder.pid))) {
        throw new SidecarError(
          'budget_ledger_locked',
          `budget ledger ${dir} is in use by pid ${holder.pid}${holder.hostname ? ` on ${holder.hostname}` : ''}; only one process may own a ledger`,
        );
      }
      logger?.warn({ file, pid: holder.pid }, 'taking over a stale budget ledger lock (its owner is gone)');
      await unlink(file).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
    }
    throw new SidecarError('budget_ledger_locked', `could not take the lock ${file} (contended)`);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

async function readHolder(file: string): Promise<{ pid: number; hostname?: string } | 'gone' | undefined> {
  let text: string;
  try {
    text = await readFile(file, { encoding: 'utf8', flag: constants.O_RDONLY | constants.O_NOFOLLOW });
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'gone' : undefined;
  }
  try {
    const v = JSON.parse(text) as { pid?: unknown; hostname?: unknown };
    if (typeof v.pid !== 'number' || !Number.isSafeInteger(v.pid) || v.pid <= 0) return undefined;
    return { pid: v.pid, ...(typeof v.hostname === 'string' ? { hostname: v.hostname } : {}) };
  } catch {
    return undefined;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH'; // EPERM: alive, owned by someone else
  }
}

async function releaseLock(file: string, content: string): Promise<void> {
  if (!heldHere.delete(file)) return;
  try {
    // Only remove the lock if it is still ours (a stale-lock takeover may have replaced it).
    if ((await readFile(file, 'utf8')) === content) await unlink(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new SidecarError('budget_ledger_failed', `cannot release ${file}: ${errorMessage(err)}`, { cause: err });
    }
  }
}
