/** Shared bits of the budget tests: temp dirs, a capturing logger, reading the ledger files. */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import type { BudgetLogger } from '../../src/budget/store.js';

export function tempDir(t: Test, prefix = 'budget-'): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface LogLine {
  level: string;
  obj: object;
  msg: string | undefined;
}

export function capturingLogger(): BudgetLogger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: string) => (obj: object, msg?: string) => void lines.push({ level, obj, msg });
  return { lines, info: at('info'), warn: at('warn'), error: at('error') };
}

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
