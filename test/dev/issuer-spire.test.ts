/**
 * The dev issuer behaves like SPIRE's agent where a client can tell, over real Unix sockets:
 * the exact security header rule and SPIRE's error texts, federated bundles per entry, SVIDs in
 * entry ID order with duplicate hints dropped, JWT-SVIDs cached per (ID, audience set) with the
 * JWT TTL and `aud` as a list, CA rotation in SPIRE's steps, and SPIRE's rotation rule.
 */
import t from 'tap';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { DevIssuer } from '../../src/dev/issuer.js';
import { DevCa } from '../../src/dev/ca.js';
import { hasWorkloadHeader, rotationDue } from '../../src/dev/issuer-util.js';
import { WorkloadApiClient } from '../../src/spiffe/workload-api/client.js';
import type { X509Context } from '../../src/spiffe/workload-api/parse.js';
import type { BundleSet } from '../../src/spiffe/bundle/bundle-set.js';
import { parseTrustDomain } from '../../src/spiffe/id.js';
import type { SidecarError } from '../../src/errors.js';
import type { JwtSvidResponse, X509BundlesResponse, X509SvidResponse } from '../../src/spiffe/workload-api/proto.js';
import { firstOfStream, headerMd, rawUnary } from './raw-grpc.js';
import { EventLog, sleep, tempSocketDir } from '../helpers/workload-api.js';

const TD = 'example.org';
const PARTNER = parseTrustDomain('partner.example');
const { dir, cleanup } = tempSocketDir('issuer-spire-');
t.teardown(cleanup);
const withReason = (reason: string) => ({ message: /./, reason });

const md = headerMd;

t.test('security header: exactly one value "true"; SPIRE error texts', async (t) => {
  const issuer = await DevIssuer.start({ trustDomain: TD, socketDir: path.join(dir, 'hdr') });
  t.teardown(() => issuer.stop());
  const { socketPath } = await issuer.registerWorkload(`spiffe://${TD}/w`);
  for (const [what, meta] of [['missing', md()], ['twice "true"', md('true', 'true')], ['"true" and "false"', md('true', 'false')]] as const) {
    const r = await firstOfStream(socketPath, 'FetchX509SVID', meta);
    t.equal(r.status?.code, grpc.status.INVALID_ARGUMENT, `${what}: InvalidArgument`);
    t.equal(r.status?.details, 'security header missing from request', `${what}: SPIRE's text`);
  }
  t.ok((await firstOfStream<X509SvidResponse>(socketPath, 'FetchX509SVID', md('true'))).msg, 'control: one "true"');
  // Node's HTTP/2 joins repeated header fields into one value ("true, true"), so over the wire
  // a list never looks like "true"; the rule itself is SPIRE's: one value, exactly "true".
  t.notOk(hasWorkloadHeader(md('true', 'true')), 'a list of values is refused even if each is "true"');
  t.notOk(hasWorkloadHeader(md('false', 'true')), 'a list merely containing "true" is refused');
  t.ok(hasWorkloadHeader(md('true')));

  const badId = await rawUnary(socketPath, 'FetchJWTSVID', { audience: ['a'], spiffe_id: 'nope' }, md('true'));
  t.equal(badId.err?.code, grpc.status.INVALID_ARGUMENT);
  t.match(badId.err?.details, /^invalid requested SPIFFE ID: /);
  const notMine = await rawUnary(socketPath, 'FetchJWTSVID', { audience: ['a'], spiffe_id: `spiffe://${TD}/other` }, md('true'));
  t.equal(notMine.err?.code, grpc.status.PERMISSION_DENIED);
  t.equal(notMine.err?.details, 'no identity issued');

  issuer.deregisterWorkload(`spiffe://${TD}/w`);
  for (const method of ['FetchX509SVID', 'FetchX509Bundles', 'FetchJWTBundles']) {
    const r = await firstOfStream(socketPath, method, md('true'));
    t.equal(r.status?.code, grpc.status.PERMISSION_DENIED, `${method}: PermissionDenied`);
    t.equal(r.status?.details, 'no identity issued', `${method}: SPIRE's text`);
  }
  const jwt = await rawUnary(socketPath, 'FetchJWTSVID', { audience: ['a'] }, md('true'));
  t.equal(jwt.err?.details, 'no identity issued');
});

t.test('federated bundles go only to workloads whose entries federate with that trust domain', async (t) => {
  const issuer = await DevIssuer.start({ trustDomain: TD, socketDir: path.join(dir, 'fed') });
  t.teardown(() => issuer.stop());
  const partner = await DevCa.create({ trustDomain: PARTNER });
  issuer.setFederatedBundle('partner.example', partner.bundle());
  const a = await issuer.registerWorkload(`spiffe://${TD}/a`, { federatesWith: ['partner.example'] });
  const b = await issuer.registerWorkload(`spiffe://${TD}/b`);

  const aSvid = (await firstOfStream<X509SvidResponse>(a.socketPath, 'FetchX509SVID', md('true'))).msg!;
  t.same(Object.keys(aSvid.federated_bundles), ['spiffe://partner.example'], 'a federates: it gets the bundle');
  const bSvid = (await firstOfStream<X509SvidResponse>(b.socketPath, 'FetchX509SVID', md('true'))).msg!;
  t.same(Object.keys(bSvid.federated_bundles), [], 'b does not');
  const bBundles = (await firstOfStream<X509BundlesResponse>(b.socketPath, 'FetchX509Bundles', md('true'))).msg!;
  t.same(Object.keys(bBundles.bundles), [`spiffe://${TD}`], 'nor in FetchX509Bundles');

  // `entry update -federatesWith`: pushed to b's open stream, then taken away again.
  const client = new WorkloadApiClient({ endpoint: b.endpoint });
  t.teardown(() => client.close());
  const bundles = new EventLog<BundleSet>();
  client.watchX509Bundles(bundles.push, () => {});
  await bundles.next(undefined, 30_000, 'first bundles');
  issuer.setFederatesWith(`spiffe://${TD}/b`, ['partner.example']);
  await bundles.next((s) => s.has(PARTNER), 30_000, 'partner bundle pushed to b');
  issuer.setFederatesWith(`spiffe://${TD}/b`, []);
  await bundles.next((s) => !s.has(PARTNER), 30_000, 'partner bundle withdrawn from b');
  t.throws(() => issuer.setFederatesWith(`spiffe://${TD}/nobody`, []), withReason('dev_issuer_invalid'));
  await t.rejects(issuer.registerWorkload(`spiffe://${TD}/c`, { federatesWith: [TD] }), withReason('dev_issuer_invalid'), 'not the own trust domain');
});

t.test('several SVIDs: ascending entry ID; of a duplicate hint the older (then lower ID) entry stays', async (t) => {
  const issuer = await DevIssuer.start({ trustDomain: TD, socketDir: path.join(dir, 'order') });
  t.teardown(() => issuer.stop());
  const { socketPath } = await issuer.registerWorkload(`spiffe://${TD}/c`, {
    entryId: 'c',
    hint: 'x',
    extraIdentities: [
      { spiffeId: `spiffe://${TD}/a`, entryId: 'a', hint: 'y' },
      { spiffeId: `spiffe://${TD}/b`, entryId: 'b', hint: 'x' },
    ],
  });
  const msg = (await firstOfStream<X509SvidResponse>(socketPath, 'FetchX509SVID', md('true'))).msg!;
  t.same(msg.svids.map((s) => [s.spiffe_id, s.hint]), [[`spiffe://${TD}/a`, 'y'], [`spiffe://${TD}/b`, 'x']]);
  const jwt = (await rawUnary<JwtSvidResponse>(socketPath, 'FetchJWTSVID', { audience: ['aud'] }, md('true'))).value!;
  t.same(jwt.svids.map((s) => s.spiffe_id), [`spiffe://${TD}/a`, `spiffe://${TD}/b`], 'JWT-SVIDs in the same order');
  await t.rejects(issuer.registerWorkload(`spiffe://${TD}/d`, { entryId: 'a' }), withReason('dev_issuer_invalid'), 'entry IDs are unique');
});

t.test('JWT-SVIDs: cached per (ID, audience set), JWT TTL, aud always a list, renewed past half-life', async (t) => {
  const issuer = await DevIssuer.start({ trustDomain: TD, socketDir: path.join(dir, 'jwt'), svidTtlSeconds: 3600 });
  t.teardown(() => issuer.stop());
  t.equal(issuer.jwtSvidTtlSeconds, 300, 'SPIRE default_jwt_svid_ttl');
  const { endpoint } = await issuer.registerWorkload(`spiffe://${TD}/j`, {
    extraIdentities: [{ spiffeId: `spiffe://${TD}/short`, jwtSvidTtlSeconds: 2 }],
  });
  const client = new WorkloadApiClient({ endpoint });
  t.teardown(() => client.close());
  const fetch = async (audience: string[], spiffeId = `spiffe://${TD}/j`) => (await client.fetchJwtSvid({ audience, spiffeId }))[0]!.token;

  const ab = await fetch(['a', 'b']);
  t.equal(await fetch(['a', 'b']), ab, 'same token again');
  t.equal(await fetch(['b', 'a']), ab, 'audience order does not matter');
  const single = await fetch(['a']);
  t.not(single, ab, 'another audience set, another token');
  const claims = decodeJwt(single);
  t.same(claims.aud, ['a'], 'aud is a list for one audience');
  t.equal(Number(claims.exp) - Number(claims.iat), 300, 'JWT TTL, not the X.509 TTL');

  const short1 = await fetch(['a'], `spiffe://${TD}/short`);
  t.equal(Number(decodeJwt(short1).exp) - Number(decodeJwt(short1).iat), 2, "the entry's jwtSvidTtlSeconds");
  let short2 = short1;
  for (let i = 0; i < 200 && short2 === short1; i++) {
    await sleep(100);
    short2 = await fetch(['a'], `spiffe://${TD}/short`);
  }
  t.not(short2, short1, 'renewed once past its half-life');

  // CA rotation in steps: a cached token survives activation; tainting its key replaces it.
  const oldAuthority = issuer.ca.activeAuthorityId;
  issuer.activateCa(await issuer.prepareCa());
  t.equal(await fetch(['a', 'b']), ab, 'still cached after activate');
  await issuer.taintCa(oldAuthority);
  const renewed = await fetch(['a', 'b']);
  t.not(renewed, ab, 'replaced after taint');
  t.not(decodeProtectedHeader(renewed).kid, decodeProtectedHeader(ab).kid, 'signed with the new key');
});

t.test('CA rotation in SPIRE steps: prepare publishes, activate, taint reissues, revoke drops the root', async (t) => {
  const issuer = await DevIssuer.start({ trustDomain: TD, socketDir: path.join(dir, 'ca'), svidTtlSeconds: 3600 });
  t.teardown(() => issuer.stop());
  const { endpoint } = await issuer.registerWorkload(`spiffe://${TD}/ca`);
  const client = new WorkloadApiClient({ endpoint });
  t.teardown(() => client.close());
  const updates = new EventLog<X509Context>();
  const errors = new EventLog<SidecarError>();
  client.watchX509Context(updates.push, errors.push);
  const roots = (c: X509Context) => c.bundles.getX509Bundle(parseTrustDomain(TD))!.authorities.length;
  const serial = (c: X509Context) => c.svid.certificates[0]!.serialNumber;

  const first = await updates.next(undefined, 30_000, 'first SVID');
  const oldAuthority = issuer.ca.activeAuthorityId;
  const next = await issuer.prepareCa();
  const prepared = await updates.next((c) => roots(c) === 2, 30_000, 'bundle with the prepared root');
  t.equal(serial(prepared), serial(first), 'same SVID: the prepared authority does not sign yet');

  issuer.activateCa(next);
  t.equal(issuer.ca.activeAuthorityId, next);
  await issuer.taintCa(oldAuthority);
  const reissued = await updates.next((c) => serial(c) !== serial(first), 30_000, 'SVID replaced after taint');
  t.ok(reissued.svid.certificates[0]!.checkIssued(new X509Certificate(issuer.ca.rootPem())), 'signed by the new authority');
  t.equal(roots(reissued), 2, 'the tainted root is still trusted');

  issuer.revokeCa(oldAuthority);
  const revoked = await updates.next((c) => roots(c) === 1, 30_000, 'bundle without the revoked root');
  t.equal(serial(revoked), serial(reissued), 'no reissue on revoke');
  t.same(errors.items, []);
  t.throws(() => issuer.revokeCa(next), withReason('dev_ca_authority_invalid'), 'the active authority cannot be revoked');
});

t.test("SPIRE's rotation rule: half of NotAfter - NotBefore, +/-10 % jitter; NotBefore backdated 10 s", async (t) => {
  t.notOk(rotationDue(44, 0, 100, false), 'before half-life');
  t.ok(rotationDue(50, 0, 100, false), 'at half-life without jitter');
  t.ok(rotationDue(100, 0, 100, true), 'expired');
  const at = (now: number) => Array.from({ length: 400 }, () => rotationDue(now, 0, 100, true));
  t.ok(at(44).every((d) => !d), 'never due with more than 55 % left');
  t.ok(at(56).every((d) => d), 'always due with less than 45 % left');
  const middle = at(50);
  t.ok(middle.some((d) => d) && middle.some((d) => !d), 'at exactly half it depends on the jitter');

  const issuer = await DevIssuer.start({ trustDomain: TD, socketDir: path.join(dir, 'backdate'), svidTtlSeconds: 30 });
  t.teardown(() => issuer.stop());
  const { socketPath } = await issuer.registerWorkload(`spiffe://${TD}/b`);
  const before = Date.now();
  const msg = (await firstOfStream<X509SvidResponse>(socketPath, 'FetchX509SVID', md('true'))).msg!;
  const leaf = new X509Certificate(msg.svids[0]!.x509_svid);
  t.ok(new Date(leaf.validFrom).getTime() <= before - 9_000, 'NotBefore is backdated 10 s');
  const lifetime = new Date(leaf.validTo).getTime() - new Date(leaf.validFrom).getTime();
  t.ok(lifetime >= 40_000 && lifetime <= 41_000, `lifetime is TTL + 10 s (${lifetime} ms)`);
  await t.rejects(DevIssuer.start({ trustDomain: TD, socketDir: path.join(dir, 'bad'), syncIntervalMs: 0 }), withReason('dev_issuer_invalid'));
  await t.rejects(DevIssuer.start({ trustDomain: TD, socketDir: path.join(dir, 'bad'), jwtSvidTtlSeconds: 0 }), withReason('dev_issuer_invalid'));
});
