/**
 * Rotation under load on real SPIRE: concurrent requests through an agent sidecar and a service
 * sidecar, each its own process with its own entry, while SPIRE rotates both SVIDs at least
 * twice. Not one request may fail, each new SVID must be in place before the old one expires,
 * and new connections must carry it.
 */
import t from 'tap';
import { Load, SpirePair, SvidHistory } from '../helpers/spire-pair.js';
import { spireSkip, startSpire, until } from '../helpers/spire.js';

const TTL_S = 30;
/** SPIRE backdates NotBefore by 10 s. */
const LIFETIME_S = TTL_S + 10;

const skip = spireSkip();
if (skip) t.skip(skip, () => {});
else {
  t.test('two rotations of each sidecar under concurrent load: zero failed requests', async (t) => {
    const spire = await startSpire(t, { trustDomain: 'pair.spire.test' });
    const pair = await SpirePair.start(t, spire, { x509SvidTtlSeconds: TTL_S });
    const histories = { service: new SvidHistory(pair.service), agent: new SvidHistory(pair.agent) };
    const load = new Load((agent) => pair.request(agent));
    let stopped = false;
    const stopAll = async () => {
      if (stopped) return;
      stopped = true;
      await load.stop();
      await Promise.all([histories.service.stop(), histories.agent.stop()]);
    };
    t.teardown(stopAll);

    // Three SVIDs each (two rotations): SPIRE rotates at about half of the lifetime, so this
    // takes about one lifetime; three lifetimes is the bound.
    await until(
      () => (histories.service.seen.length >= 3 && histories.agent.seen.length >= 3 ? true : undefined),
      'two rotations of each sidecar',
      3 * LIFETIME_S * 1000,
      () => `service saw ${histories.service.seen.length} SVIDs, agent ${histories.agent.seen.length}\n${pair.context()}`,
    );
    // The service sees the agent's newest SVID on a new connection (the old pool is retired at rotation).
    const agentSerial = histories.agent.seen.at(-1)!.serial;
    await until(
      async () => ((await pair.service.status())?.inbound?.peers as { serial: string }[] | undefined)?.some((p) => p.serial === agentSerial) || undefined,
      "the agent sidecar's newest SVID on the service's inbound connections",
      LIFETIME_S * 1000,
      () => pair.context(),
    );
    await stopAll();

    t.equal(load.failures.length, 0, `no failed request: ${JSON.stringify(load.failures.slice(0, 5))}`);
    t.ok(load.ok > 100, `requests kept flowing through the rotations (${load.ok} succeeded)`);
    for (const [name, history] of Object.entries(histories)) {
      const rotations = history.rotations();
      t.comment(
        `rotation (${name}, TTL ${TTL_S} s, lifetime ${LIFETIME_S} s): ` +
          rotations.map((r) => `signed ${r.issuedAfter.toFixed(0)} s / in the sidecar ${r.seenAfter.toFixed(1)} s after NotBefore`).join('; '),
      );
      for (const r of rotations) {
        // Half of the lifetime with SPIRE's +/-10 % jitter; a little lower for whole-second certificate times.
        t.ok(r.issuedAfter >= 0.4 * LIFETIME_S, `${name}: rotated after about half the lifetime, not early (${r.issuedAfter} s)`);
        t.ok(r.seenAt < r.previousNotAfter, `${name}: the new SVID was in place ${((r.previousNotAfter - r.seenAt) / 1000).toFixed(1)} s before the old one expired`);
      }
      const member = name === 'service' ? pair.service : pair.agent;
      t.ok((await member.metric('attest_sidecar_svid_rotations_total')) >= 2, `${name}: the rotations metric counts them`);
      t.equal(member.proc.exited, undefined, `${name} still running`);
    }
  });
}
