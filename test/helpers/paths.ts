/** Locations the tests need: the repo root and the team's shared conformance data. */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { skipFor } from './needs.js';

function findRepoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('repo root (package.json) not found');
    dir = up;
  }
  return dir;
}

export const repoRoot = findRepoRoot();
export const conformanceDir = path.resolve(repoRoot, '../shared/conformance');
export const binPath = path.join(repoRoot, 'bin/attest-sidecar');

/**
 * Returns the conformance folder, or a skip reason when it is absent. In CI (CI=true) its
 * absence is an error: the conformance tests must run there.
 */
export function conformance(sub: string): { dir: string } | { skip: string } {
  const dir = path.join(conformanceDir, sub);
  const skip = skipFor(existsSync(dir) ? undefined : `conformance data not found at ${dir}`);
  return skip ? { skip } : { dir };
}
