/** Test helpers for the Workload API tests: short temp socket folders and awaitable event queues. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** A fresh temp folder (short path: Unix socket paths are limited to ~107 bytes). */
export function tempSocketDir(prefix = 'wl-'): { dir: string; cleanup: () => void } {
  const base = tmpdir().length < 40 ? tmpdir() : '/tmp';
  const dir = mkdtempSync(path.join(base, prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Records values pushed by callbacks; `next(pred)` resolves with the first value (already seen
 * after the cursor, or arriving later) that matches, or rejects after `timeoutMs`.
 */
export class EventLog<T> {
  readonly items: T[] = [];
  private cursor = 0;
  private waiters: { pred: (v: T) => boolean; resolve: (v: T) => void }[] = [];

  push = (v: T): void => {
    this.items.push(v);
    for (const w of [...this.waiters]) {
      if (w.pred(v)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        this.cursor = this.items.length;
        w.resolve(v);
      }
    }
  };

  /** Waits for a matching item after those already consumed by previous next() calls. */
  next(pred: (v: T) => boolean = () => true, timeoutMs = 30_000, what = 'event'): Promise<T> {
    for (let i = this.cursor; i < this.items.length; i++) {
      const v = this.items[i]!;
      if (pred(v)) {
        this.cursor = i + 1;
        return Promise.resolve(v);
      }
    }
    this.cursor = this.items.length;
    return new Promise<T>((resolve, reject) => {
      const waiter = {
        pred,
        resolve: (v: T) => {
          clearTimeout(timer);
          resolve(v);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
