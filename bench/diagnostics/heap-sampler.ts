/**
 * Preloaded (`--import`) into a proxy by allocations.ts; not part of the product. Each
 * SIGUSR2 starts V8's sampling heap profiler or stops it and writes the profile:
 *   1st/2nd signal: every allocation (objects later collected included) -> PID-allocated.json
 *   3rd/4th signal: only objects that survived the young generation (promoted, or allocated in
 *                   the old generation directly) -> PID-survived.json
 * Before a stop, two young-generation collections (needs --expose-gc) drop the garbage still in
 * the young generation, so the second profile holds what the old generation had to take.
 */
import { Session } from 'node:inspector';
import { renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const dir = process.env.ATTEST_HEAP_SAMPLER_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  const post = (method: string, params: object = {}) =>
    new Promise<unknown>((resolve, reject) => session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))));
  const modes = [
    { name: 'allocated', params: { samplingInterval: 1024, includeObjectsCollectedByMinorGC: true, includeObjectsCollectedByMajorGC: true } },
    { name: 'survived', params: { samplingInterval: 256, includeObjectsCollectedByMinorGC: false, includeObjectsCollectedByMajorGC: true } },
  ];
  let step = 0;
  process.on('SIGUSR2', () => {
    const mode = modes[Math.floor(step / 2) % modes.length]!;
    const starting = step % 2 === 0;
    step++;
    const done = starting
      ? post('HeapProfiler.startSampling', mode.params)
      : (() => {
          const gc = (globalThis as { gc?: (o: { type: string }) => void }).gc;
          gc?.({ type: 'minor' });
          gc?.({ type: 'minor' });
          // Written whole under a temporary name, then renamed: the reader waits for the final name.
          return post('HeapProfiler.stopSampling').then((res) => {
            const file = path.join(dir, `${process.pid}-${mode.name}.json`);
            writeFileSync(`${file}.tmp`, JSON.stringify((res as { profile: unknown }).profile));
            renameSync(`${file}.tmp`, file);
          });
        })();
    done.catch((err: unknown) => process.stderr.write(`heap-sampler: ${(err as Error).message}\n`));
  });
}
