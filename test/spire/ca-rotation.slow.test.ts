/**
 * SPIRE's X.509 CA rotation (`spire-server localauthority x509 prepare / activate / taint /
 * revoke`) under a service+agent sidecar pair serving traffic:
 *   prepare   the new root reaches the bundles both sidecars hold;
 *   activate  new SVIDs chain to the new CA and peers holding one are accepted;
 *   taint     SVIDs signed by the old CA are rotated at once, not at their half-life;
 *   revoke    the old root leaves the sidecars' bundles, and a client presenting an SVID that
 *             chains only to it is refused in the handshake (tls_certificate_untrusted).
 * No request fails across prepare, activate and taint (nor revoke: by then the pair's own SVIDs
 * are of the new CA). The times from each step to the sidecars
 * seeing it are logged.
 *
 * The sidecars' entries have a 600 s TTL, so that their natural rotation (about 300 s after
 * issue) cannot be mistaken for the rotation taint forces.
 */
import t from 'tap';
import { Client } from 'undici';
import { X509Certificate } from 'node:crypto';
import { svidChainPem, svidKeyPem } from '../../src/spiffe/svid.js';
import { viaProxy } from '../helpers/mesh.js';
import { Load, PAIR_TD, SpirePair } from '../helpers/spire-pair.js';
import { authorities, presentedChain, probeServer, rawMtlsGet, tapSelector, tapSource } from '../helpers/spire-peers.js';
import { spireSkip, startSpire, until } from '../helpers/spire.js';
import type { SpireDeployment } from '../../src/mesh/spire/deployment.js';

type AuthorityState = { authority_id?: string; authorityId?: string };

async function localAuthority(spire: SpireDeployment, args: string[]): Promise<Record<string, AuthorityState | undefined>> {
  return JSON.parse((await spire.server(['localauthority', 'x509', ...args, '-output', 'json'])).stdout) as Record<string, AuthorityState | undefined>;
}
const idOf = (s: AuthorityState | undefined): string => s?.authority_id ?? s?.authorityId ?? '';

function pemCertificates(pem: string): X509Certificate[] {
  return (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
}

const signedBy = (leaf: X509Certificate, root: X509Certificate): boolean => leaf.checkIssued(root) && leaf.verify(root.publicKey);

const skip = spireSkip();
if (skip) t.skip(skip, () => {});
else {
  t.test('X.509 CA rotation: prepare, activate, taint, revoke under traffic', async (t) => {
    const spire = await startSpire(t, { trustDomain: PAIR_TD });
    const td = spire.trustDomain;
    const clientId = `spiffe://${td}/client`;
    const freshId = `spiffe://${td}/client-fresh`;
    await spire.createEntry({ spiffeId: clientId, selectors: [tapSelector()], x509SvidTtlSeconds: 600, hint: 'client' });
    const client = await tapSource(t, spire, 'client');
    const oldRoot = pemCertificates(await spire.bundlePem());
    t.equal(oldRoot.length, 1, 'one root before the rotation');
    const oldCa = oldRoot[0]!;
    const savedOld = client.current()!.svid;
    t.ok(signedBy(savedOld.certificates[0]!, oldCa), 'the client SVID saved now chains to the old root');
    let bundle = await spire.bundlePem();
    const probe = await probeServer(t, client, () => bundle);
    const pair = await SpirePair.start(t, spire, {
      x509SvidTtlSeconds: 600,
      policyAgents: { client: clientId, fresh: freshId },
      extraRoutes: `    - { name: probe, upstream: "https://127.0.0.1:${probe.port}", server_id: "${clientId}" }`,
    });
    const viaProbe = () => viaProxy(`http://127.0.0.1:${pair.outboundPort}`, 'GET', 'http://probe/x');
    t.equal((await pair.request()).status, 200, 'the pair serves before the rotation');
    t.equal((await viaProbe()).status, 200, 'the agent sidecar reaches the probe');
    const traffic = new Load((agent) => pair.request(agent));
    const sawBoth = async (pred: (fps: string[]) => boolean) =>
      pred(authorities(await pair.service.status(), td)) && pred(authorities(await pair.agent.status(), td)) ? true : undefined;

    const activeBefore = idOf((await localAuthority(spire, ['show'])).active);
    t.ok(activeBefore, `the active authority: ${activeBefore}`);

    // prepare: a second root in the bundle; signing still with the old CA.
    let step = Date.now();
    const prepared = idOf((await localAuthority(spire, ['prepare'])).prepared_authority ?? (await localAuthority(spire, ['show'])).prepared);
    t.ok(prepared && prepared !== activeBefore, `prepared authority ${prepared}`);
    bundle = await spire.bundlePem();
    const roots = pemCertificates(bundle);
    t.equal(roots.length, 2, 'the bundle holds the old and the prepared root');
    const newCa = roots.find((c) => c.fingerprint256 !== oldCa.fingerprint256)!;
    await until(() => sawBoth((fps) => fps.includes(newCa.fingerprint256) && fps.includes(oldCa.fingerprint256)), 'both sidecars to hold the prepared root', 60_000, () => pair.context());
    t.comment(`prepare -> both sidecars hold the new root: ${Date.now() - step} ms`);
    t.pass('both sidecars hold the old and the new root');

    // activate: new SVIDs are signed by the new CA, and a peer holding one is accepted.
    step = Date.now();
    const activated = idOf((await localAuthority(spire, ['activate', '-authorityID', prepared])).activated_authority);
    t.equal(activated, prepared, 'the prepared authority is active');
    await spire.createEntry({ spiffeId: freshId, selectors: [tapSelector()], x509SvidTtlSeconds: 600, hint: 'fresh' });
    const fresh = (await tapSource(t, spire, 'fresh')).current()!.svid;
    t.comment(`activate -> an SVID for a new entry in a workload: ${Date.now() - step} ms`);
    t.ok(signedBy(fresh.certificates[0]!, newCa), 'an SVID issued after activate chains to the new root');
    t.notOk(signedBy(fresh.certificates[0]!, oldCa), 'and not to the old one');
    const freshGet = await rawMtlsGet(pair.inboundPort, svidChainPem(fresh), svidKeyPem(fresh), bundle);
    t.equal(freshGet.status, 200, `a peer on the new CA is accepted by the inbound sidecar: ${freshGet.refused ?? 'answered'}`);
    t.ok(signedBy((await presentedChain(pair.inboundPort, fresh, bundle))[0]!, oldCa), 'the service sidecar still presents its SVID of the old CA (not rotated yet)');

    // taint: SVIDs of the old CA are rotated now.
    step = Date.now();
    await localAuthority(spire, ['taint', '-authorityID', activeBefore]);
    const timings: string[] = [];
    await Promise.all([
      until(
        async () => {
          const leaf = (await presentedChain(pair.inboundPort, fresh, bundle))[0];
          if (!leaf || !signedBy(leaf, newCa)) return undefined;
          timings.push(`service ${Date.now() - step} ms`);
          return true;
        },
        'the service sidecar to present an SVID of the new CA',
        120_000,
        pair.context,
      ),
      until(
        async () => {
          if ((await viaProbe()).status !== 200) return undefined;
          const leaf = probe.lastClientChain()[0];
          if (!leaf || !signedBy(leaf, newCa)) return undefined;
          timings.push(`agent ${Date.now() - step} ms`);
          return true;
        },
        'the agent sidecar to present an SVID of the new CA',
        120_000,
        pair.context,
      ),
      until(() => (signedBy(client.current()!.svid.certificates[0]!, newCa) ? true : undefined), 'the test client SVID to be rotated', 120_000),
    ]);
    t.comment(`taint -> sidecars present SVIDs of the new CA: ${timings.join(', ')}`);
    t.pass('after taint both sidecars present SVIDs of the new CA (within 120 s; their natural rotation is ~300 s away)');
    t.ok(authorities(await pair.service.status(), td).includes(oldCa.fingerprint256), 'a tainted root stays in the bundle until revoked');

    t.ok(traffic.ok > 0, `${traffic.ok} requests through the pair during prepare, activate and taint`);
    t.same(traffic.failures, [], 'no request failed during prepare, activate and taint');
    const oldGet = await rawMtlsGet(pair.inboundPort, svidChainPem(savedOld), svidKeyPem(savedOld), bundle);
    t.equal(oldGet.status, 200, `before revoke, the saved SVID of the old CA is still accepted: ${oldGet.refused ?? 'answered'}`);
    const kept = new Client(`https://127.0.0.1:${pair.inboundPort}`, {
      connect: { cert: svidChainPem(savedOld), key: svidKeyPem(savedOld), ca: bundle, checkServerIdentity: () => undefined },
      pipelining: 1,
      keepAliveTimeout: 120_000,
    });
    t.teardown(() => kept.destroy());
    const keptGet = async () => {
      const r = await kept.request({ path: '/things/1', method: 'GET' });
      return { status: r.statusCode, body: await r.body.text() };
    };
    t.equal((await keptGet()).status, 200, 'a connection with the saved SVID of the old CA, kept alive across revoke');

    // revoke: the old root leaves the sidecars' bundles; its SVIDs are refused.
    step = Date.now();
    await localAuthority(spire, ['revoke', '-authorityID', activeBefore]);
    bundle = await spire.bundlePem();
    t.same(pemCertificates(bundle).map((c) => c.fingerprint256), [newCa.fingerprint256], 'the SPIRE bundle holds only the new root');
    await until(() => sawBoth((fps) => fps.length === 1 && fps[0] === newCa.fingerprint256), 'both sidecars to drop the old root', 60_000, () => pair.context());
    t.comment(`revoke -> both sidecars dropped the old root: ${Date.now() - step} ms`);
    t.pass('both sidecars hold only the new root');
    t.same(await keptGet(), { status: 403, body: JSON.stringify({ error: 'Peer no longer trusted' }) }, 'the kept-alive connection of the old CA is refused at its next request');
    // The pair's own connections were all made with SVIDs of the new CA by now: revoke costs them nothing.
    const afterRevoke = traffic.ok;
    await until(() => (traffic.ok > afterRevoke + 50 ? true : undefined), 'more requests through the pair after revoke', 60_000, () => pair.context());
    await traffic.stop();
    t.same(traffic.failures, [], `no request failed across revoke either (${traffic.ok} in all)`);

    const before = pair.serviceAudit().filter((r) => r.type === 'peer_rejected' && r.reason === 'tls_certificate_untrusted').length;
    const refused = await rawMtlsGet(pair.inboundPort, svidChainPem(savedOld), svidKeyPem(savedOld), bundle);
    t.equal(refused.status, undefined, `a client with an SVID of the revoked CA gets no answer (${refused.refused})`);
    await until(
      () => (pair.serviceAudit().filter((r) => r.type === 'peer_rejected' && r.reason === 'tls_certificate_untrusted').length > before ? true : undefined),
      'the refusal in the audit log',
      30_000,
    );
    t.pass('refused in the handshake as tls_certificate_untrusted');
    t.equal((await pair.request()).status, 200, 'the pair serves after the rotation');
    const freshAfter = await rawMtlsGet(pair.inboundPort, svidChainPem(fresh), svidKeyPem(fresh), bundle);
    t.equal(freshAfter.status, 200, 'a peer on the new CA is still accepted');
  });
}
