/**
 * The short fuzz pass CI runs: a fixed number of inputs per target from a fixed seed, so a run
 * is the same everywhere. Any finding fails, naming the crash
 * file that reproduces it (`npm run fuzz -- --replay FILE`).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { runTarget } from '../../fuzz/runner.js';
import type { FuzzTarget } from '../../fuzz/target.js';

export const SHORT_PASS_SEED = 20261207;
export const SHORT_PASS_INPUTS = 200;

export function shortPass(targets: readonly FuzzTarget[]): void {
  // Kept after a failing run (in the OS temp folder) so the failure can be replayed.
  const crashDir = mkdtempSync(path.join(tmpdir(), 'fuzz-short-pass-'));
  let failed = false;
  t.teardown(() => {
    if (!failed) rmSync(crashDir, { recursive: true, force: true });
  });
  for (const target of targets) {
    t.test(`${target.name}: ${SHORT_PASS_INPUTS} inputs give a result or a typed error`, async (t) => {
      const r = await runTarget(target.name, { seed: SHORT_PASS_SEED, iterations: SHORT_PASS_INPUTS, crashDir });
      t.equal(r.iterations, SHORT_PASS_INPUTS, 'every input ran');
      for (const f of r.findings) {
        failed = true;
        t.fail(`${f.kind} at input ${f.iteration} (seed ${f.seed}): ${f.error}\n  replay: npm run fuzz -- --replay ${f.file}`);
      }
      t.ok((r.counts.ok ?? 0) + (r.counts.typed ?? 0) > 0, `outcomes: ${JSON.stringify(r.counts)}`);
    });
  }
}
