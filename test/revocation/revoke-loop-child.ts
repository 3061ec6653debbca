/**
 * Child process for the crash test (not a test itself): revokes spiffe://td/agent-0, -1, ...
 * as fast as it can and prints "ack <n>" once revocation n is durable, until it is killed.
 * argv: <stateFile> <'sequential' | 'burst'>
 */
import { RevocationStore } from '../../src/revocation/store.js';
import { quietLogger } from '../helpers/logger.js';

const [stateFile, mode] = process.argv.slice(2);
if (!stateFile) throw new Error('usage: revoke-loop-child <stateFile> [sequential|burst]');
const store = await RevocationStore.open({ stateFile, logger: quietLogger });
const id = (i: number) => `spiffe://td/agent-${i}`;

for (let i = 0; ; ) {
  if (mode === 'burst') {
    // Several revocations in flight at once: they share (coalesced) writes.
    const batch: Promise<unknown>[] = [];
    for (let k = 0; k < 7; k++, i++) batch.push(store.revoke(id(i), { reason: `r${i}`, by: 'token' }));
    await Promise.all(batch);
    process.stdout.write(`ack ${i - 1}\n`);
  } else {
    await store.revoke(id(i), { reason: `r${i}`, by: 'token' });
    process.stdout.write(`ack ${i}\n`);
    i++;
  }
}
