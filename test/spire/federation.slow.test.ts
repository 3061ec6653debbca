/**
 * Federation against real SPIRE: a partner trust domain's bundle (`spire-server bundle set`)
 * reaches only the workloads whose entry federates with it (SPIRE sends federated bundles per
 * entry): the service sidecar then accepts a partner-issued SVID that the policy names, the
 * agent sidecar (whose entry does not federate) never holds the partner bundle. Removing the
 * federation (entry update without it, then `bundle delete -mode dissociate`) drops the
 * bundle from the service sidecar, and the partner peer is refused in the handshake.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from 'undici';
import { DevCa } from '../../src/dev/ca.js';
import { PAIR_TD, SERVICE_ID, SpirePair } from '../helpers/spire-pair.js';
import { rawMtlsGet, trustDomains } from '../helpers/spire-peers.js';
import { spireSkip, startSpire, until } from '../helpers/spire.js';

const PARTNER = 'partner.test';
const partnerAgent = `spiffe://${PARTNER}/agent/p1`;

const skip = spireSkip();
if (skip) t.skip(skip, () => {});
else {
  t.test('a partner trust domain federated per entry, then removed', async (t) => {
    const spire = await startSpire(t, { trustDomain: PAIR_TD });
    const td = spire.trustDomain;
    const partner = await DevCa.create({ trustDomain: PARTNER });
    const partnerPem = path.join(spire.dir, 'partner.pem');
    writeFileSync(partnerPem, partner.bundle().toPem());
    const pair = await SpirePair.start(t, spire, { x509SvidTtlSeconds: 60, policyAgents: { p1: partnerAgent } });
    const homeBundle = await spire.bundlePem();
    const peer = await partner.issueX509Svid(partnerAgent, { ttlSeconds: 3600 });
    const partnerGet = () => rawMtlsGet(pair.inboundPort, peer.certChainPem, peer.keyPem, homeBundle);
    const untrusted = () => pair.serviceAudit().filter((r) => r.type === 'peer_rejected' && r.reason === 'tls_certificate_untrusted').length;
    const domains = async (which: 'service' | 'agent') => trustDomains(await pair[which].status());
    const serviceSpec = (federatesWith?: string[]) => ({
      spiffeId: SERVICE_ID,
      selectors: [pair.service.proc.selector],
      x509SvidTtlSeconds: 60,
      ...(federatesWith ? { federatesWith } : {}),
    });
    const refusedUntrusted = async (what: string) => {
      const before = untrusted();
      const r = await partnerGet();
      t.equal(r.status, undefined, `${what}: the partner peer gets no answer (${r.refused})`);
      await until(() => (untrusted() > before ? true : undefined), 'the refusal in the audit log', 30_000, () => pair.context());
      t.pass(`${what}: refused in the handshake as tls_certificate_untrusted`);
    };

    await refusedUntrusted('before federation');

    // Federate: bundle set, then the service's entry names the partner.
    let step = Date.now();
    await spire.server(['bundle', 'set', '-id', `spiffe://${PARTNER}`, '-path', partnerPem]);
    await spire.updateEntry(pair.entries.service!, serviceSpec([PARTNER]));
    await until(async () => ((await domains('service')).includes(PARTNER) ? true : undefined), 'the service sidecar to hold the partner bundle', 60_000, () => pair.context());
    t.comment(`bundle set + entry update -> the service sidecar holds the partner bundle: ${Date.now() - step} ms`);
    const ok = await partnerGet();
    t.equal(ok.status, 200, `the partner peer is accepted: ${ok.refused ?? ''}`);
    t.equal(JSON.parse(ok.body).headers['x-spiffe-id'], partnerAgent, 'the app sees the partner peer');
    t.equal((await pair.request()).status, 200, 'the home agent still gets through');
    // A partner connection kept alive across the removal below.
    let connects = 0;
    const kept = new Client(`https://127.0.0.1:${pair.inboundPort}`, {
      connect: { cert: peer.certChainPem, key: peer.keyPem, ca: homeBundle, checkServerIdentity: () => undefined },
      pipelining: 1,
      keepAliveTimeout: 120_000,
    });
    kept.on('connect', () => connects++);
    t.teardown(() => kept.destroy());
    const first = await kept.request({ path: '/things/1', method: 'GET' });
    await first.body.text();
    t.equal(first.statusCode, 200, 'a kept-alive partner connection is served while federated');

    // The agent's entry does not federate: several sync ticks later it still has only its own bundle.
    const settled = Date.now() + 5_000;
    while (Date.now() < settled) {
      t.same(await domains('agent'), [td], 'the agent sidecar never receives the partner bundle');
      await new Promise((r) => setTimeout(r, 1_000));
    }

    // Remove the federation from the entry: the bundle leaves the service sidecar.
    step = Date.now();
    await spire.updateEntry(pair.entries.service!, serviceSpec());
    await until(async () => (!(await domains('service')).includes(PARTNER) ? true : undefined), 'the service sidecar to drop the partner bundle', 60_000, () => pair.context());
    t.comment(`entry update without federatesWith -> the service sidecar dropped the partner bundle: ${Date.now() - step} ms`);
    t.same(await domains('service'), [td]);
    const later = await kept.request({ path: '/things/1', method: 'GET' }).then(
      async (r) => ({ status: r.statusCode, body: await r.body.text(), connection: r.headers.connection }),
      (err: Error) => ({ status: undefined, body: err.message, connection: undefined }),
    );
    t.equal(later.status, 403, `the kept-alive partner connection is refused at its next request: ${later.body}`);
    t.same(JSON.parse(later.body), { error: 'Peer no longer trusted' });
    t.equal(later.connection, 'close', 'and closed');
    t.equal(connects, 1, 'on the same connection');
    await refusedUntrusted('after the entry stopped federating');

    // Again, then remove the partner bundle itself (dissociating the entries that named it).
    await spire.updateEntry(pair.entries.service!, serviceSpec([PARTNER]));
    await until(async () => ((await domains('service')).includes(PARTNER) ? true : undefined), 'the service sidecar to hold the partner bundle again', 60_000, () => pair.context());
    t.equal((await partnerGet()).status, 200, 'federated again: accepted');
    step = Date.now();
    await spire.server(['bundle', 'delete', '-id', `spiffe://${PARTNER}`, '-mode', 'dissociate']);
    await until(async () => (!(await domains('service')).includes(PARTNER) ? true : undefined), 'the service sidecar to drop the deleted bundle', 60_000, () => pair.context());
    t.comment(`bundle delete -> the service sidecar dropped the partner bundle: ${Date.now() - step} ms`);
    await refusedUntrusted('after bundle delete');
    t.same(await domains('agent'), [td], 'the agent sidecar never held the partner bundle');
    t.equal((await pair.request()).status, 200, 'the home agent still gets through');
  });
}
