/**
 * Workload API client against the real DevIssuer over real Unix sockets: first SVID, rotation,
 * CA rotation, federated bundles, hints, X.509/JWT bundle streams, JWT-SVID fetch + validate.
 * Received SVIDs are checked with the `openssl verify` CLI.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import path from 'node:path';
import { DevIssuer } from '../../src/dev/issuer.js';
import { DevCa } from '../../src/dev/ca.js';
import { WorkloadApiClient } from '../../src/spiffe/workload-api/client.js';
import { type X509Context } from '../../src/spiffe/workload-api/parse.js';
import type { BundleSet } from '../../src/spiffe/bundle/bundle-set.js';
import type { JwtBundle } from '../../src/spiffe/bundle/jwt-bundle.js';
import { parseTrustDomain } from '../../src/spiffe/id.js';
import type { SidecarError } from '../../src/errors.js';
import { EventLog, tempSocketDir } from '../helpers/workload-api.js';

const TD = 'example.org';
const { dir, cleanup } = tempSocketDir('wlapi-');
t.teardown(cleanup);

const serialOf = (c: X509Context): string => c.svid.certificates[0]!.serialNumber;
const withReason = (reason: string) => ({ message: /./, reason });

function opensslVerify(ctx: X509Context): { ok: boolean; out: string } {
  const bundle = ctx.bundles.getX509Bundle(ctx.svid.id.trustDomain)!;
  const ca = path.join(dir, 'ca.pem');
  const untrusted = path.join(dir, 'untrusted.pem');
  const leaf = path.join(dir, 'leaf.pem');
  writeFileSync(ca, bundle.toPem());
  const intermediates = ctx.svid.certificates.slice(1).map((c) => c.toString()).join('');
  writeFileSync(untrusted, intermediates);
  writeFileSync(leaf, ctx.svid.certificates[0]!.toString());
  const untrustedArgs = intermediates ? ['-untrusted', untrusted] : [];
  const r = spawnSync('openssl', ['verify', '-CAfile', ca, ...untrustedArgs, '-purpose', 'sslclient', leaf], { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}`.trim() };
}

function watchContexts(client: WorkloadApiClient): { updates: EventLog<X509Context>; errors: EventLog<SidecarError> } {
  const updates = new EventLog<X509Context>();
  const errors = new EventLog<SidecarError>();
  client.watchX509Context(updates.push, errors.push);
  return { updates, errors };
}

t.test('first SVID, half-life rotation, CA rotation, federated bundles', async (t) => {
  const issuer = await DevIssuer.start({ trustDomain: TD, socketDir: path.join(dir, 'a'), svidTtlSeconds: 2 });
  t.teardown(() => issuer.stop());
  const { endpoint, socketPath } = await issuer.registerWorkload('spiffe://example.org/agent/one', { federatesWith: ['partner.example'] });
  t.match(endpoint, /^unix:\/\/\//);
  t.equal(endpoint, `unix://${socketPath}`);

  const client = new WorkloadApiClient({ endpoint });
  t.teardown(() => client.close());
  const { updates, errors } = watchContexts(client);

  const first = await updates.next(undefined, 5000, 'first SVID');
  t.equal(first.svid.id.toString(), 'spiffe://example.org/agent/one');
  t.equal(first.svids.length, 1);
  t.equal(first.svid.certificates.length, 1, 'leaf only, like SPIRE');
  t.same(first.bundles.trustDomains().map(String), [TD]);
  t.ok(first.bundles.getX509Bundle(parseTrustDomain(TD))!.equals(issuer.ca.bundle()), 'bundle is the CA bundle');
  const v = opensslVerify(first);
  t.ok(v.ok, `openssl verify: ${v.out}`);

  // TTL 2 s: a fresh SVID (new serial) arrives at half-life without asking.
  const rotated = await updates.next((c) => serialOf(c) !== serialOf(first), 5000, 'rotated SVID');
  t.ok(rotated.svid.notAfter.getTime() >= first.svid.notAfter.getTime(), 'later expiry');
  t.ok(opensslVerify(rotated).ok);

  // CA rotation: new chain, both roots in the bundle, pushed immediately.
  await issuer.rotateCa();
  const afterCa = await updates.next((c) => c.bundles.getX509Bundle(parseTrustDomain(TD))!.authorities.length === 2, 5000, 'bundle with two roots');
  t.ok(afterCa.svid.certificates[0]!.checkIssued(new X509Certificate(issuer.ca.rootPem())), 'signed by the new root');
  t.ok(opensslVerify(afterCa).ok, 'new chain verifies against the new bundle');

  // Federated bundle appears, then disappears.
  const other = await DevCa.create({ trustDomain: 'partner.example' });
  issuer.setFederatedBundle('spiffe://partner.example', other.bundle());
  const withFed = await updates.next((c) => c.bundles.has(parseTrustDomain('partner.example')), 5000, 'federated bundle');
  t.ok(withFed.bundles.getX509Bundle(parseTrustDomain('partner.example'))!.equals(other.bundle()));
  t.same(withFed.bundles.trustDomains().map(String), [TD, 'partner.example'].sort());
  issuer.setFederatedBundle('partner.example', undefined);
  const noFed = await updates.next((c) => !c.bundles.has(parseTrustDomain('partner.example')), 5000, 'federated bundle gone');
  t.same(noFed.bundles.trustDomains().map(String), [TD]);

  t.same(errors.items.map((e) => e.reason), [], 'no errors on a healthy stream');
});

t.test('several SVIDs: ordered by entry ID (as SPIRE), picked by hint, first by default, unknown hint is an error', async (t) => {
  const issuer = await DevIssuer.start({ trustDomain: TD, socketDir: path.join(dir, 'b'), svidTtlSeconds: 60 });
  t.teardown(() => issuer.stop());
  // Registered second, but its entry ID sorts first: SPIRE serves it first.
  const { endpoint } = await issuer.registerWorkload('spiffe://example.org/external', {
    hint: 'external',
    entryId: 'entry-b',
    extraIdentities: [{ spiffeId: 'spiffe://example.org/internal', hint: 'internal', entryId: 'entry-a' }],
  });

  const byDefault = new WorkloadApiClient({ endpoint });
  const byHint = new WorkloadApiClient({ endpoint, hint: 'external' });
  const badHint = new WorkloadApiClient({ endpoint, hint: 'nope' });
  t.teardown(() => [byDefault, byHint, badHint].forEach((c) => c.close()));

  const d = await watchContexts(byDefault).updates.next();
  t.same(d.svids.map((s) => [s.id.toString(), s.hint]), [
    ['spiffe://example.org/internal', 'internal'],
    ['spiffe://example.org/external', 'external'],
  ]);
  t.equal(d.svid.id.toString(), 'spiffe://example.org/internal', 'first SVID without a hint');

  const h = await watchContexts(byHint).updates.next();
  t.equal(h.svid.id.toString(), 'spiffe://example.org/external');
  t.equal(h.svid.hint, 'external');

  const bad = watchContexts(badHint);
  const err = await bad.errors.next(undefined, 5000, 'hint error');
  t.equal(err.reason, 'svid_hint_not_found');
  t.equal(bad.updates.items.length, 0, 'no identity picked for an unknown hint');
});

t.test('X.509 bundle stream and JWT: fetch, validate, bundles', async (t) => {
  const issuer = await DevIssuer.start({ trustDomain: TD, socketDir: path.join(dir, 'c'), svidTtlSeconds: 60 });
  t.teardown(() => issuer.stop());
  const { endpoint } = await issuer.registerWorkload('spiffe://example.org/jwt', {
    hint: 'main',
    entryId: 'entry-1',
    federatesWith: ['partner.example'],
    extraIdentities: [{ spiffeId: 'spiffe://example.org/jwt2', entryId: 'entry-2' }],
  });
  const client = new WorkloadApiClient({ endpoint });
  t.teardown(() => client.close());

  const x509Bundles = new EventLog<BundleSet>();
  const bundleErrors = new EventLog<SidecarError>();
  client.watchX509Bundles(x509Bundles.push, bundleErrors.push);
  const b1 = await x509Bundles.next(undefined, 5000, 'X.509 bundles');
  t.same(b1.trustDomains().map(String), [TD]);
  const other = await DevCa.create({ trustDomain: 'partner.example' });
  issuer.setFederatedBundle('partner.example', other.bundle());
  const b2 = await x509Bundles.next((b) => b.has(parseTrustDomain('partner.example')), 5000, 'federated in bundle stream');
  t.ok(b2.getX509Bundle(parseTrustDomain('partner.example'))!.equals(other.bundle()));

  const jwtBundles = new EventLog<ReadonlyMap<string, JwtBundle>>();
  client.watchJwtBundles(jwtBundles.push, bundleErrors.push);
  const jb = await jwtBundles.next(undefined, 5000, 'JWT bundles');
  t.same([...jb.keys()], [TD]);
  t.ok(jb.get(TD)!.equals(issuer.ca.jwtBundle()));

  const all = await client.fetchJwtSvid({ audience: ['svc-a'] });
  t.same(all.map((s) => s.id.toString()), ['spiffe://example.org/jwt', 'spiffe://example.org/jwt2'], 'one token per identity');
  t.equal(all[0]!.hint, 'main');
  const [one] = await client.fetchJwtSvid({ audience: ['svc-a', 'svc-b'], spiffeId: 'spiffe://example.org/jwt2' });
  t.equal(one!.id.toString(), 'spiffe://example.org/jwt2');
  t.same(one!.audience, ['svc-a', 'svc-b']);
  t.ok(one!.expiry && one!.expiry.getTime() > Date.now());

  const validated = await client.validateJwtSvid(one!.token, 'svc-b');
  t.equal(validated.id.toString(), 'spiffe://example.org/jwt2');
  t.equal(validated.claims['sub'], 'spiffe://example.org/jwt2');
  t.same(validated.claims['aud'], ['svc-a', 'svc-b']);
  t.type(validated.claims['exp'], 'number');

  await t.rejects(client.validateJwtSvid(one!.token, 'svc-c'), withReason('workload_api_invalid_argument'), 'wrong audience');
  const tampered = one!.token.slice(0, -4) + (one!.token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
  await t.rejects(client.validateJwtSvid(tampered, 'svc-a'), withReason('workload_api_invalid_argument'), 'bad signature');
  await t.rejects(
    client.fetchJwtSvid({ audience: ['svc-a'], spiffeId: 'spiffe://example.org/not-mine' }),
    withReason('workload_api_permission_denied'),
  );
  await t.rejects(client.fetchJwtSvid({ audience: [] }), withReason('jwt_svid_audience_missing'));

  // Rotating the CA pushes the new JWT key to JWT bundle watchers.
  await issuer.rotateCa();
  const jb2 = await jwtBundles.next((m) => m.get(TD)!.authorities.size === 2, 5000, 'rotated JWT bundle');
  t.ok(jb2.get(TD)!.equals(issuer.ca.jwtBundle()));
  t.same(bundleErrors.items, []);
});

t.test('client rejects calls after close and invalid endpoints up front', async (t) => {
  t.throws(() => new WorkloadApiClient({ endpoint: 'unix://host/x.sock' }), withReason('workload_endpoint_invalid'));
  const client = new WorkloadApiClient({ endpoint: `unix://${path.join(dir, 'none.sock')}` });
  client.close();
  await t.rejects(client.fetchJwtSvid({ audience: ['a'] }), withReason('workload_api_closed'));
  t.throws(() => client.watchX509Context(() => {}, () => {}), withReason('workload_api_closed'));
});


