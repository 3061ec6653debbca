/**
 * A SPIRE agent restart under steady traffic through a sidecar pair: while the agent is down the
 * sidecars keep their SVIDs (still valid) and stay ready, and not one request fails; once it is
 * back their Workload API streams resume and each sidecar gets a new SVID.
 */
import t from 'tap';
import { Load, SpirePair, type PairMember } from '../helpers/spire-pair.js';
import { spireSkip, startSpire, until } from '../helpers/spire.js';

const TTL_S = 60;
/** SPIRE backdates NotBefore by 10 s and rotates at about half of the lifetime. */
const LIFETIME_S = TTL_S + 10;
/** How long the agent stays down: well inside what is left of an SVID that has not been rotated yet (about half the lifetime). */
const DOWN_MS = 10_000;

const skip = spireSkip();
if (skip) t.skip(skip, () => {});
else {
  t.test('agent restart under load: no failed request, streams resume, new SVIDs', async (t) => {
    const spire = await startSpire(t, { trustDomain: 'pair.spire.test' });
    const pair = await SpirePair.start(t, spire, { x509SvidTtlSeconds: TTL_S });
    const members: PairMember[] = [pair.service, pair.agent];
    const load = new Load((agent) => pair.request(agent));
    t.teardown(() => load.stop());
    await until(() => (load.ok >= 20 ? true : undefined), 'traffic through the pair', 30_000, () => pair.context());

    const held = await Promise.all(members.map(async (m) => (await m.svid())!));
    const stoppedAt = Date.now();
    for (const svid of held) {
      t.ok(Date.parse(svid.not_after) - stoppedAt > DOWN_MS + 20_000, `the SVID held outlives the downtime by far (${((Date.parse(svid.not_after) - stoppedAt) / 1000).toFixed(0)} s left)`);
    }
    await spire.stopAgent();
    t.equal(spire.agentPid, undefined, 'the agent is down');

    for (const m of members) {
      const s = await until(
        async () => {
          const st = await m.status();
          return st?.identity_source?.connected === false && st.identity_source.lastError ? st : undefined;
        },
        `${m.proc.name} to notice the agent is gone`,
        30_000,
        () => pair.context(),
      );
      t.comment(`${m.proc.name}: Workload API stream with the agent down: ${s.identity_source.lastError}`);
      t.match(s.identity_source.lastError, /^FetchX509SVID: (UNAVAILABLE|stream ended by the server)/, `${m.proc.name}: the stream reports the agent gone`);
    }
    // The agent stays down for a while (a deliberate outage, not a wait for a condition).
    await new Promise((r) => setTimeout(r, Math.max(0, stoppedAt + DOWN_MS - Date.now())));
    for (const [i, m] of members.entries()) {
      t.equal((await m.readyz())?.status, 200, `${m.proc.name}: still ready with the agent down (its SVID is valid)`);
      t.equal((await m.svid())?.serial, held[i]!.serial, `${m.proc.name}: keeps its SVID while the agent is down`);
    }
    const failedWhileDown = load.failures.length;

    const startedAt = Date.now();
    await spire.startAgent();
    for (const [i, m] of members.entries()) {
      // The restarted agent signs afresh for the reconnecting workload (or at the latest at the next rotation).
      const s = await until(
        async () => {
          const st = await m.status();
          return st?.identity_source?.connected === true && st.svid && st.svid.serial !== held[i]!.serial ? st : undefined;
        },
        `${m.proc.name}: a new SVID after the restart`,
        LIFETIME_S * 1000 + 60_000,
        () => pair.context(),
      );
      t.comment(`${m.proc.name}: new SVID ${((Date.now() - startedAt) / 1000).toFixed(1)} s after the agent restart began (serial ${held[i]!.serial} -> ${s.svid.serial})`);
      t.pass(`${m.proc.name}: stream resumed, new SVID`);
    }
    // A little more traffic on the new SVIDs.
    const okAfter = load.ok;
    await until(() => (load.ok >= okAfter + 50 ? true : undefined), 'traffic on the new SVIDs', 30_000, () => pair.context());
    await load.stop();

    t.equal(failedWhileDown, 0, 'no failed request while the agent was down');
    t.equal(load.failures.length, 0, `no failed request at all: ${JSON.stringify(load.failures.slice(0, 5))}`);
    t.comment(`${load.ok} requests succeeded across the restart`);
    for (const m of members) t.equal(m.proc.exited, undefined, `${m.proc.name} still running`);
  });
}
