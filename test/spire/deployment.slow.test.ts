/**
 * The SPIRE runner itself: a real server and agent start, an in-process workload gets the SVID of
 * its entry over the Workload API (leaf only, as SPIRE issues by default), the agent restarts
 * without a new join token (KeyManager disk), and stop() leaves no process behind.
 */
import t from 'tap';
import { realpathSync } from 'node:fs';
import { WorkloadApiX509Source } from '../../src/spiffe/workload-api/source.js';
import { spireSkip, startSpire, until } from '../helpers/spire.js';

const skip = spireSkip();
if (skip) t.skip(skip, () => {});
else {
  t.test('a workload gets its SVID from a real SPIRE agent; the agent restarts on its disk key', async (t) => {
    const spire = await startSpire(t, { trustDomain: 'runner.test' });
    t.match(spire.agentId, /^spiffe:\/\/runner\.test\/spire\/agent\/join_token\/[0-9a-f-]+$/);
    const id = 'spiffe://runner.test/self';
    const started = Date.now();
    await spire.createEntry({ spiffeId: id, selectors: [`unix:path:${realpathSync(process.execPath)}`], x509SvidTtlSeconds: 60 });
    const source = new WorkloadApiX509Source({ endpoint: `unix://${spire.workloadSocket}` });
    t.teardown(() => source.close());
    source.start();
    const state = await source.waitReady(60_000);
    t.comment(`entry created to SVID in the workload: ${Date.now() - started} ms`);
    t.equal(state.svid.id.toString(), id);
    t.equal(state.svid.certificates.length, 1, 'SPIRE issues leaf-only X509-SVIDs by default');
    const lifetime = (state.svid.notAfter.getTime() - state.svid.notBefore.getTime()) / 1000;
    t.ok(lifetime >= 69 && lifetime <= 71, `NotBefore is backdated 10 s: lifetime ${lifetime} s for a 60 s TTL`);
    t.ok(state.bundles.has(state.svid.id.trustDomain), 'the own trust bundle is delivered');

    const serverPid = spire.serverPid!;
    const agentPid = spire.agentPid!;
    await spire.stopAgent();
    t.equal(spire.agentPid, undefined, 'the agent stopped');
    await spire.startAgent();
    t.not(spire.agentPid, agentPid, 'a new agent process');
    const again = new WorkloadApiX509Source({ endpoint: `unix://${spire.workloadSocket}` });
    t.teardown(() => again.close());
    again.start();
    t.equal((await again.waitReady(60_000)).svid.id.toString(), id, 'the restarted agent serves the workload without a new join token');

    const restartedPid = spire.agentPid!;
    await spire.stop();
    for (const pid of [serverPid, restartedPid]) {
      await until(() => {
        try {
          process.kill(pid, 0);
          return undefined;
        } catch {
          return true;
        }
      }, `pid ${pid} to be gone`, 30_000);
    }
    t.pass('server and agent stopped by pid');
  });
}
