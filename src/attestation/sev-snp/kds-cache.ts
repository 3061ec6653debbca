/**
 * The on-disk half of the KDS collateral cache: one DER file per VCEK key in a private
 * directory (0700), each written atomically (temp file 0600 + fsync + rename) so a reader never
 * sees half a certificate. Reads refuse symlinks, non-regular files, oversized files and files
 * that someone other than the owner may write: the content is validated again by the caller,
 * but a cache another user can plant files in is not ours.
 */
import { constants } from 'node:fs';
import { writeFileAtomic } from '../../lib/fs-atomic.js';
import { chmod, mkdir, open, readdir } from 'node:fs/promises';
import path from 'node:path';
import { SidecarError } from '../../errors.js';
import { VCEK_CACHE_FILE } from './kds-key.js';

/** A VCEK is about 1.3 KiB; anything much larger is not one. */
export const MAX_CACHE_FILE_BYTES = 16 * 1024;

export interface CachedFile {
  data: Buffer;
  mtimeMs: number;
}

/** Creates the cache directory if needed and makes it private (0700). */
export async function ensureCacheDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // mkdir's mode is filtered by the umask and ignored for an existing directory.
  await chmod(dir, 0o700);
}

/** Writes `name` in `dir` atomically with mode 0600. */
export async function writeCacheFile(dir: string, name: string, data: Uint8Array): Promise<void> {
  if (!VCEK_CACHE_FILE.test(name)) throw new SidecarError('kds_cache_write_failed', `refusing cache file name "${name}"`);
  await ensureCacheDir(dir);
  await writeFileAtomic(path.join(dir, name), data, 0o600);
}

/**
 * Reads one cache file. Resolves undefined when it does not exist; throws SidecarError
 * (kds_cache_refused) for a symlink, non-regular, oversized or group/other-writable file.
 */
export async function readCacheFile(dir: string, name: string): Promise<CachedFile | undefined> {
  let fh;
  try {
    fh = await open(path.join(dir, name), constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') throw new SidecarError('kds_cache_refused', `cache file ${name} is a symlink`);
    throw err;
  }
  try {
    const stats = await fh.stat();
    if (!stats.isFile()) throw new SidecarError('kds_cache_refused', `cache file ${name} is not a regular file`);
    if (stats.size > MAX_CACHE_FILE_BYTES) {
      throw new SidecarError('kds_cache_refused', `cache file ${name} has ${stats.size} bytes (max ${MAX_CACHE_FILE_BYTES})`);
    }
    if ((stats.mode & 0o022) !== 0) {
      throw new SidecarError('kds_cache_refused', `cache file ${name} is writable by group or others (mode ${(stats.mode & 0o777).toString(8)})`);
    }
    const data = await fh.readFile();
    if (data.byteLength > MAX_CACHE_FILE_BYTES) throw new SidecarError('kds_cache_refused', `cache file ${name} grew while read`);
    return { data, mtimeMs: stats.mtimeMs };
  } finally {
    await fh.close();
  }
}

/** Names of the cache files in `dir` (temp files and strangers are ignored); [] if it is absent. */
export async function listCacheFiles(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((n) => VCEK_CACHE_FILE.test(n)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new SidecarError('kds_cache_unreadable', `cannot read the KDS cache directory ${dir}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
