/**
 * Reading revocation files with the checks that make their content trustworthy: regular file,
 * bounded size, nobody else may write it, valid UTF-8. The mode is checked on the opened
 * handle (fstat), so a swap between check and read cannot slip another file in.
 */
import { constants } from 'node:fs';
import { open, readdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { SidecarError, errorMessage } from '../errors.js';

/** Far above any real list (10k entries are ~2 MiB), far below a memory problem. */
export const MAX_REVOCATION_FILE_BYTES = 32 * 1024 * 1024;

export interface CheckedReadOptions {
  /** Mode bits that must be clear (e.g. 0o022: no group/other write). */
  forbiddenMode: number;
  /** false: the path itself must not be a symlink (sidecar-owned state files). */
  followSymlinks: boolean;
}

/** The file's text, or undefined when it does not exist; throws SidecarError('revocations_unreadable'). */
export async function readCheckedText(file: string, opts: CheckedReadOptions): Promise<string | undefined> {
  const unreadable = (why: string, cause?: unknown) =>
    new SidecarError('revocations_unreadable', `revocation file ${file} ${why}`, cause ? { cause } : undefined);
  let fh;
  try {
    // O_NONBLOCK: a FIFO at this path must not hang startup (it is then refused as not a regular file).
    fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK | (opts.followSymlinks ? 0 : constants.O_NOFOLLOW));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw unreadable('is a symlink; refusing it (the sidecar replaces this file itself)');
    throw unreadable(`cannot be opened: ${errorMessage(err)}`, err);
  }
  try {
    const stats = await fh.stat();
    if (!stats.isFile()) throw unreadable('is not a regular file');
    const bad = stats.mode & opts.forbiddenMode;
    if (bad !== 0) {
      throw unreadable(
        `has mode ${(stats.mode & 0o777).toString(8).padStart(4, '0')}: ${describeBits(bad)} may write it; ` +
          `refusing revocations someone else can change (chmod ${opts.forbiddenMode === 0o002 ? 'o-w' : 'go-w'})`,
      );
    }
    if (stats.size > MAX_REVOCATION_FILE_BYTES) throw unreadable(`is larger than ${MAX_REVOCATION_FILE_BYTES} bytes`);
    const bytes = await fh.readFile();
    if (bytes.length > MAX_REVOCATION_FILE_BYTES) throw unreadable(`is larger than ${MAX_REVOCATION_FILE_BYTES} bytes`);
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw unreadable('is not valid UTF-8 text');
    }
  } catch (err) {
    if (err instanceof SidecarError) throw err;
    throw unreadable(`cannot be read: ${errorMessage(err)}`, err);
  } finally {
    await fh.close();
  }
}

function describeBits(bits: number): string {
  const who = [bits & 0o020 ? 'group' : '', bits & 0o002 ? 'others' : ''].filter(Boolean);
  return who.join(' and ') || 'someone else';
}

/**
 * Removes temp files that writeFileAtomic left behind when a process died mid-write
 * (`.<name>.<pid>.<hex>.tmp`), but only those of processes that no longer exist.
 */
export async function removeStaleTempFiles(file: string): Promise<number> {
  const dir = path.dirname(file);
  const prefix = `.${path.basename(file)}.`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const m = /^(\d+)\.[0-9a-f]+\.tmp$/.exec(name.slice(prefix.length));
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    await unlink(path.join(dir, name)).then(
      () => removed++,
      () => undefined,
    );
  }
  return removed;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
