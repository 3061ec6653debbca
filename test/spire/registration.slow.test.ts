/**
 * A sidecar whose workload SPIRE does not know yet: the agent answers PermissionDenied "no
 * identity issued", the sidecar says so (not ready, the error in /status) and refuses outbound
 * requests with 503 no_svid; once the entry exists it gets its SVID, becomes ready and serves.
 */
import t from 'tap';
import { AGENT_ID, SpirePair } from '../helpers/spire-pair.js';
import { spireSkip, startSpire, until } from '../helpers/spire.js';

const skip = spireSkip();
if (skip) t.skip(skip, () => {});
else {
  t.test('an unregistered workload is refused by the agent, then served once its entry exists', async (t) => {
    const spire = await startSpire(t, { trustDomain: 'pair.spire.test' });
    const pair = await SpirePair.start(t, spire, { x509SvidTtlSeconds: 60, registerAgent: false });
    const { agent } = pair;

    // The stream has been refused at least once: the error shows in /status.
    const status = await until(
      async () => {
        const s = await agent.status();
        return /PERMISSION_DENIED/.test(s?.identity_source?.lastError ?? '') ? s : undefined;
      },
      'the Workload API refusal in /status',
      60_000,
      () => pair.context(),
    );
    t.match(status.identity_source.lastError, /FetchX509SVID: PERMISSION_DENIED: no identity issued/, `/status names the refusal: ${status.identity_source.lastError}`);
    t.equal(status.identity_source.kind, 'workload-api');
    t.equal(status.svid, null, 'no SVID');
    t.equal(status.spiffe_id, null);

    const ready = await agent.readyz();
    t.equal(ready?.status, 503, 'not ready');
    t.same(ready?.body.checks.svid, { ok: false, detail: 'no SVID received yet (identity source: FetchX509SVID: PERMISSION_DENIED: no identity issued)' }, '/readyz: the svid check fails and says why');
    t.equal(ready?.body.checks.identity_source, undefined, 'PermissionDenied is not a configuration mistake: retrying can fix it');

    const refused = await pair.request();
    t.equal(refused.status, 503, 'outbound refused');
    t.same(JSON.parse(refused.body), { error: 'No valid SVID: the sidecar has no unexpired identity' });
    t.equal(agent.proc.exited, undefined, 'the sidecar keeps running while refused');

    const created = Date.now();
    await pair.registerAgent();
    await pair.untilReady(agent);
    const readyAfter = Date.now() - created;
    t.comment(`registration: entry created to sidecar ready: ${readyAfter} ms`);

    const served = await pair.request();
    t.equal(served.status, 200, `served once registered: ${served.body.slice(0, 200)}`);
    t.equal(JSON.parse(served.body).headers['x-spiffe-id'], AGENT_ID, 'the app sees the agent sidecar\'s SPIRE identity');
    const after = await agent.status();
    t.equal(after?.spiffe_id, AGENT_ID);
    t.notOk(after?.identity_source.lastError, 'the refusal is cleared by the SVID');
    t.equal(after?.identity_source.connected, true);
  });
}
