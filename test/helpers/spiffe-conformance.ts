/**
 * Locates the third-party SPIFFE conformance data (go-spiffe fixtures) in
 * <repo>/../shared/conformance/spiffe. Files are read in place, never copied.
 * Missing folder: the caller's tests skip with a printed reason, except under CI=true
 * where absence is a failure.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { skipFor } from './needs.js';

export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found above the test file');
    dir = up;
  }
}

export const SPIFFE_CONFORMANCE_DIR = join(repoRoot(), '..', 'shared', 'conformance', 'spiffe');


/**
 * The conformance folder, or undefined after recording a skip that says why (a failure when
 * CI=true: see needs.ts).
 */
export function spiffeConformance(t: Test): string | undefined {
  if (existsSync(SPIFFE_CONFORMANCE_DIR)) return SPIFFE_CONFORMANCE_DIR;
  const skip = skipFor(`SPIFFE conformance data not found at ${SPIFFE_CONFORMANCE_DIR}`);
  if (skip) t.skip(skip, () => {});
  return undefined;
}

export function readConformance(dir: string, rel: string): Buffer {
  return readFileSync(join(dir, rel));
}
