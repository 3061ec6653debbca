/**
 * Crash durability: a child process charges in a loop and is SIGKILLed mid-run; reopening the
 * ledger must show every charge the child saw committed (and nothing it could not have tried).
 * Repeated on one directory, so each run also recovers from the previous kill (stale lock, torn
 * tail), and with a tiny compactEvery so kills land during compactions.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { FileBudgetStore } from '../../src/budget/file-store.js';
import { childEnv, sumTotals, tempDir } from './helpers.js';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'crash-child.js');
const CONCURRENCY = 16;

/** Runs the child until it has printed at least `killAfter` commits, SIGKILLs it, returns the last one. */
function runAndKill(dir: string, compactEvery: number, killAfter: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, dir, String(compactEvery), String(CONCURRENCY)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: childEnv(),
    });
    let last = 0;
    let buf = '';
    let stderr = '';
    let killed = false;
    const guard = setTimeout(() => child.kill('SIGKILL'), 20_000); // never hang the suite
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const line of lines) {
        const m = /^committed (\d+)$/.exec(line);
        if (m) last = Number(m[1]);
      }
      if (!killed && last >= killAfter) {
        killed = true;
        child.kill('SIGKILL');
      }
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      if (signal !== 'SIGKILL' || !killed) return reject(new Error(`child ended early (${code ?? signal}): ${stderr}`));
      resolve(last);
    });
  });
}

async function totalOf(dir: string): Promise<{ total: number; generation: number; repaired: number }> {
  const s = await FileBudgetStore.open(dir);
  const total = sumTotals(s.entries());
  const { generation, repairedBytes } = s.stats();
  await s.close();
  return { total, generation, repaired: repairedBytes };
}

for (const compactEvery of [10_000, 23]) {
  t.test(`SIGKILL under load loses no committed charge (compactEvery ${compactEvery})`, async (t) => {
    const dir = tempDir(t, 'budget-crash-');
    let before = 0;
    let generation = 0;
    for (let run = 0; run < 3; run++) {
      const killAfter = 150 + Math.floor(Math.random() * 350);
      const committed = await runAndKill(dir, compactEvery, killAfter);
      const after = await totalOf(dir);
      t.ok(committed >= killAfter, `run ${run}: child committed ${committed}`);
      t.ok(after.total - before >= committed, `run ${run}: durable ${after.total - before} >= committed ${committed}`);
      t.ok(
        after.total - before <= committed + CONCURRENCY,
        `run ${run}: durable ${after.total - before} <= committed + in flight (${committed + CONCURRENCY})`,
      );
      if (after.repaired > 0) t.comment(`run ${run}: dropped a torn record of ${after.repaired} bytes`);
      before = after.total;
      generation = after.generation;
    }
    if (compactEvery < 100) {
      t.ok(generation >= 10, `compactions happened during the runs (generation ${generation})`);
      t.equal(JSON.parse(readFileSync(path.join(dir, 'ledger.snapshot'), 'utf8')).journal, generation);
    }
  });
}
