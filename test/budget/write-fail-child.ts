/**
 * Child process of file-store-failure.test.ts (not a test itself): runs under a file-size limit
 * (RLIMIT_FSIZE; Node ignores SIGXFSZ, so the journal write fails with EFBIG) and charges in
 * concurrent groups of 10 until the store fails. Prints one JSON line describing what it saw.
 */
import { FileBudgetStore } from '../../src/budget/file-store.js';
import type { SidecarError } from '../../src/errors.js';

const store = await FileBudgetStore.open(process.argv[2]!);
let acked = 0;
let rejected = 0;
let reason: string | undefined;
for (let round = 0; round < 1000 && !reason; round++) {
  const results = await Promise.allSettled(Array.from({ length: 10 }, () => store.charge('a:total', 1, 1_000_000)));
  for (const r of results) {
    if (r.status === 'fulfilled') acked++;
    else {
      rejected++;
      reason = (r.reason as SidecarError).reason;
    }
  }
}
const later = await store.charge('a:total', 1, 1_000_000).then(
  () => 'admitted',
  (e: SidecarError) => e.reason,
);
const laterAdjust = await store.adjust('a:total', 1).then(
  () => 'applied',
  (e: SidecarError) => e.reason,
);
const peek = store.peek('a:total');
const failed = store.stats().failed;
await store.close();
process.stdout.write(`${JSON.stringify({ acked, rejected, reason, later, laterAdjust, peek, failed })}\n`);
