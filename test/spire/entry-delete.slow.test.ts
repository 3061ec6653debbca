/**
 * The kill switch where SPIRE holds identity: `entry delete` for the agent sidecar. SPIRE stops
 * renewing its SVID and the Workload API stream answers PermissionDenied; the sidecar keeps the
 * last SVID and serves until its notAfter, then refuses outbound requests (503 no_svid) and is
 * not ready, without crashing. Re-creating the entry brings it back.
 */
import t from 'tap';
import { Load, SpirePair } from '../helpers/spire-pair.js';
import { spireSkip, startSpire, until } from '../helpers/spire.js';

const TTL_S = 30;
/** SPIRE backdates NotBefore by 10 s. */
const LIFETIME_S = TTL_S + 10;
/** Requests sent this long before notAfter must still succeed (a loaded machine may hold one back a few seconds). */
const BEFORE_MARGIN_MS = 5_000;
/** Requests sent this long after notAfter must be refused (the check is at the sidecar's clock, the same as ours). */
const AFTER_MARGIN_MS = 1_000;
const NO_SVID = { error: 'No valid SVID: the sidecar has no unexpired identity' };

const skip = spireSkip();
if (skip) t.skip(skip, () => {});
else {
  t.test('entry delete: served until notAfter, then 503 no_svid and not ready; the process lives', async (t) => {
    const spire = await startSpire(t, { trustDomain: 'pair.spire.test' });
    const pair = await SpirePair.start(t, spire, { x509SvidTtlSeconds: TTL_S });
    const { agent } = pair;
    const sent: { at: number; status: number; body: string }[] = [];
    const load = new Load(async (a) => {
      const at = Date.now();
      const r = await pair.request(a);
      sent.push({ at, ...r });
      return r;
    });
    t.teardown(() => load.stop());
    await until(() => (load.ok >= 20 ? true : undefined), 'traffic through the pair', 30_000, () => pair.context());

    const deletedAt = Date.now();
    await spire.deleteEntry(pair.entries.agent!);

    // The agent drops the identity on its next sync and refuses the stream: from then on the SVID
    // the sidecar holds is its last.
    const refused = await until(
      async () => {
        const s = await agent.status();
        return /PERMISSION_DENIED: no identity issued/.test(s?.identity_source?.lastError ?? '') ? s : undefined;
      },
      'PermissionDenied on the Workload API stream after the delete',
      30_000,
      () => pair.context(),
    );
    t.comment(`Workload API stream after the delete: ${refused.identity_source.lastError} (connected: ${refused.identity_source.connected})`);
    const last = refused.svid as { serial: string; not_after: string };
    t.ok(last, 'the sidecar keeps its last SVID through PermissionDenied');
    const notAfter = Date.parse(last.not_after);
    t.ok(notAfter - deletedAt <= LIFETIME_S * 1000, `the last SVID expires within one lifetime of the delete (${((notAfter - deletedAt) / 1000).toFixed(1)} s)`);
    t.equal((await agent.readyz())?.status, 200, 'still ready while the last SVID is valid');

    const firstRefusal = await until(
      () => sent.find((r) => r.status === 503),
      'the first refused request',
      notAfter - Date.now() + 30_000,
      () => pair.context(),
    );
    t.comment(`entry deletion: delete to first refused request ${((firstRefusal.at - deletedAt) / 1000).toFixed(1)} s (SVID notAfter ${((notAfter - deletedAt) / 1000).toFixed(1)} s after the delete)`);
    await until(() => (sent.some((r) => r.at > notAfter + AFTER_MARGIN_MS + 2_000) ? true : undefined), 'requests after notAfter', 30_000);
    await load.stop();

    const before = sent.filter((r) => r.at < notAfter - BEFORE_MARGIN_MS);
    const after = sent.filter((r) => r.at > notAfter + AFTER_MARGIN_MS);
    t.ok(before.length > 0 && after.length > 0, `requests on both sides of notAfter (${before.length} before, ${after.length} after)`);
    t.same(
      before.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.body}`),
      [],
      'every request sent before notAfter (minus a margin) succeeded',
    );
    t.same(
      after.filter((r) => r.status !== 503 || JSON.stringify(JSON.parse(r.body)) !== JSON.stringify(NO_SVID)).map((r) => `${r.status} ${r.body.slice(0, 200)}`),
      [],
      'every request sent after notAfter (plus a margin) was refused with 503 no_svid',
    );
    t.ok(firstRefusal.at >= notAfter - BEFORE_MARGIN_MS, 'no refusal before the SVID expired');

    const ready = await agent.readyz();
    t.equal(ready?.status, 503, 'not ready once the SVID expired');
    t.match(ready?.body.checks.svid, { ok: false, detail: /^SVID expired at / }, `/readyz says why: ${ready?.body.checks.svid?.detail}`);
    const status = await agent.status();
    t.equal(status?.svid?.serial, last.serial, 'no new SVID reached the sidecar after the delete');
    t.match(status?.identity_source.lastError, /PERMISSION_DENIED/, 'the stream is still refused');
    t.equal(agent.proc.exited, undefined, 'the sidecar process is still alive');
    t.equal((await pair.service.readyz())?.status, 200, 'the service sidecar (entry untouched) stays ready');

    // Restore: a new entry for the same selector brings the sidecar back without a restart.
    await pair.registerAgent();
    await pair.untilReady(agent);
    t.equal((await pair.request()).status, 200, 'served again once the entry is re-created');
  });
}
