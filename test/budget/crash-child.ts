/**
 * Child process of file-store-crash.test.ts (not a test itself): opens the ledger in argv[2] and
 * charges 1 micro-dollar as fast as it can from `concurrency` loops, printing `committed <n>`
 * after each charge resolves. The parent SIGKILLs it mid-run. Each loop has at most one charge in
 * flight, so at any instant attempted <= committed + concurrency.
 *
 * The lines go out with a synchronous write(2) on fd 1, not process.stdout: stdout writes to a
 * pipe can sit in Node's queue, and a SIGKILL would silently drop them (measured: hundreds of
 * lines), making the parent's "committed" count too low.
 */
import { writeSync } from 'node:fs';
import { FileBudgetStore } from '../../src/budget/file-store.js';

const [dir, compactEveryArg, concurrencyArg] = process.argv.slice(2);
const compactEvery = Number(compactEveryArg);
const concurrency = Number(concurrencyArg);
const keys = ['alpha:total', 'beta:2026-11-22', 'gamma:2026-11'];
const pause = new Int32Array(new SharedArrayBuffer(4));

/** Writes the whole line now; fd 1 may be non-blocking (EAGAIN while the parent catches up). */
function say(line: string): void {
  const buf = Buffer.from(`${line}\n`);
  for (let off = 0; off < buf.length; ) {
    try {
      off += writeSync(1, buf, off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}

const store = await FileBudgetStore.open(dir!, { compactEvery });
let committed = 0;

async function loop(i: number): Promise<never> {
  for (let n = 0; ; n++) {
    await store.charge(keys[(i + n) % keys.length]!, 1, Number.MAX_SAFE_INTEGER);
    committed++;
    say(`committed ${committed}`);
  }
}

say('ready');
await Promise.all(Array.from({ length: concurrency }, (_, i) => loop(i)));
