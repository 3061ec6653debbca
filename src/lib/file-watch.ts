/**
 * Debounced change notification for a few files, shared by the policy watcher and the
 * reference-value store.
 *
 * Watches each file's *directory*, not the file: an atomic replace-by-rename gives the path a
 * new inode (a file watch would stay on the old one), and a Kubernetes ConfigMap update swaps
 * the `..data` symlink, so `..`-prefixed names count as a change too. Other names in the same
 * directory are ignored: a busy neighbour (say, an audit log written next to the certificates)
 * must not cause a re-read on every write. Callers re-read and compare content hashes, so a
 * spurious notification costs one read and nothing else.
 */
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';

export interface FileWatchOptions {
  /** Quiet period after the last event before `onChange` runs; default 100 ms. */
  debounceMs?: number;
  /** A watcher failed (e.g. the directory vanished); the caller keeps its current state. */
  onError?: (err: Error) => void;
  /** Keep the process alive while watching; default true. */
  persistent?: boolean;
}

export interface FileWatch {
  close(): void;
}

/** Calls `onChange` (debounced, at most once per quiet period) when any of `files` may have changed. */
export function watchFiles(files: readonly string[], onChange: () => void, options: FileWatchOptions = {}): FileWatch {
  const debounceMs = options.debounceMs ?? 100;
  const persistent = options.persistent ?? true;
  const namesByDir = new Map<string, Set<string>>();
  for (const f of files) {
    const abs = resolve(f);
    const names = namesByDir.get(dirname(abs)) ?? new Set<string>();
    names.add(basename(abs));
    namesByDir.set(dirname(abs), names);
  }

  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const schedule = () => {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      if (!closed) onChange();
    }, debounceMs);
    if (!persistent) timer.unref();
  };

  const watchers: FSWatcher[] = [];
  try {
    for (const [dir, names] of namesByDir) {
      const w = watch(dir, { persistent }, (_event, changed) => {
        if (changed === null || names.has(String(changed)) || String(changed).startsWith('..')) schedule();
      });
      w.on('error', (err) => options.onError?.(err));
      watchers.push(w);
    }
  } catch (err) {
    for (const w of watchers) w.close();
    throw err;
  }

  return {
    close() {
      closed = true;
      clearTimeout(timer);
      timer = undefined;
      for (const w of watchers.splice(0)) w.close();
    },
  };
}
