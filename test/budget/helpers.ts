/** Shared bits of the budget tests: temp dirs, a capturing logger, reading the ledger files. */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';

export function tempDir(t: Test, prefix = 'budget-'): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export { capturingLogger, type LogLine } from '../helpers/logger.js';

export function journalFiles(dir: string): string[] {
  return readdirSync(dir).filter((n) => /^ledger\.\d+\.journal$/.test(n)).sort();
}

export function sumTotals(entries: Iterable<[string, number]>): number {
  let sum = 0;
  for (const [, v] of entries) sum += v;
  return sum;
}

/**
 * Environment for the test's child processes without tap's instrumentation (NODE_OPTIONS
 * --import of its process-info hook, which writes files: a file-size limit would trip on them).
 */
export function childEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !k.startsWith('_TAPJS_')));
}
