/** The sink's I/O helpers: chunked writes that wait out EAGAIN, and a directory fsync. */
import { closeSync, constants, fsyncSync, openSync, write } from 'node:fs';

/**
 * Writes all of `data`, waiting out EAGAIN (stdout may be a non-blocking pipe), in pieces of
 * whole lines of at most `piece` bytes (a longer line goes alone).
 */
export function writeAll(fd: number, data: Buffer, piece: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (offset: number) => {
      if (offset >= data.length) return resolve();
      let end = data.length;
      if (end - offset > piece) {
        const nl = data.lastIndexOf(0x0a, offset + piece - 1);
        end = nl >= offset ? nl + 1 : data.indexOf(0x0a, offset) + 1 || data.length;
      }
      write(fd, data, offset, end - offset, null, (err, n) => {
        if (err?.code === 'EAGAIN') return void setTimeout(step, 5, offset);
        if (err) return reject(err);
        step(offset + n);
      });
    };
    step(0);
  });
}

export function syncDirBestEffort(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    fsyncSync(fd);
  } catch {
    // Some filesystems refuse directory fsync; the file still exists.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
