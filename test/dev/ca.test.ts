/**
 * DevCa (development CA): issued SVIDs are valid SPIFFE X.509-SVIDs, chains verify with the real
 * `openssl verify` CLI: leaf-only by default (like SPIRE), leaf + intermediate on request;
 * authorities go through SPIRE's prepare/activate/taint/revoke steps; JWT-SVIDs verify against
 * its JWT bundle and always carry `aud` as a list.
 */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { verify as cryptoVerify, X509Certificate } from 'node:crypto';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { DevCa } from '../../src/dev/ca.js';
import { parseSpiffeId } from '../../src/spiffe/id.js';
import { certificateFacts, KeyUsageBit } from '../../src/spiffe/x509.js';
import { parseX509SvidRaw, parseX509Svid } from '../../src/spiffe/svid.js';

/** tap error matcher on our stable reason code. */
const withReason = (reason: string) => ({ message: /./, reason });

const dir = mkdtempSync(path.join(tmpdir(), 'devca-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function opensslVerify(rootPem: string, intermediatePem: string, leafPem: string, purpose: string): { ok: boolean; out: string } {
  const root = path.join(dir, 'root.pem');
  const inter = path.join(dir, 'inter.pem');
  const leaf = path.join(dir, 'leaf.pem');
  writeFileSync(root, rootPem);
  writeFileSync(inter, intermediatePem);
  writeFileSync(leaf, leafPem);
  const untrusted = intermediatePem ? ['-untrusted', inter] : [];
  const r = spawnSync('openssl', ['verify', '-CAfile', root, ...untrusted, '-purpose', purpose, leaf], { encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
}

function splitPem(chainPem: string): string[] {
  return chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g) ?? [];
}

t.test('by default the leaf is signed directly by the bundle root (SPIRE without an UpstreamAuthority)', async (t) => {
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  t.equal(ca.chain, 'leaf-only');
  const issued = await ca.issueX509Svid('spiffe://example.org/agents/a', { ttlSeconds: 30 });
  t.equal(issued.svid.certificates.length, 1, 'leaf only');
  t.equal(issued.authorityId, ca.activeAuthorityId);
  const [leafPem] = splitPem(issued.certChainPem);
  writeFileSync(path.join(dir, 'lo-root.pem'), ca.rootPem());
  writeFileSync(path.join(dir, 'lo-leaf.pem'), leafPem!);
  const r = spawnSync('openssl', ['verify', '-CAfile', path.join(dir, 'lo-root.pem'), '-purpose', 'sslclient', path.join(dir, 'lo-leaf.pem')], { encoding: 'utf8' });
  t.equal(r.status, 0, `openssl verify with the root alone: ${r.stdout}${r.stderr}`);
  t.ok(issued.svid.certificates[0]!.checkIssued(new X509Certificate(ca.rootPem())), 'leaf issued by the root');
  t.throws(() => ca.intermediatePem(), withReason('dev_ca_authority_invalid'), 'no intermediate to show');
  await t.rejects(DevCa.create({ trustDomain: 'example.org', chain: 'bogus' as never }), withReason('dev_issuer_invalid'));
});

t.test('chain "intermediate": a valid SPIFFE leaf plus intermediate, verifies with openssl', async (t) => {
  const ca = await DevCa.create({ trustDomain: 'example.org', chain: 'intermediate' });
  const before = Date.now();
  const issued = await ca.issueX509Svid('spiffe://example.org/agents/a', { ttlSeconds: 30, hint: 'internal' });
  const { svid } = issued;
  t.equal(svid.id.toString(), 'spiffe://example.org/agents/a');
  t.equal(svid.hint, 'internal');
  t.equal(svid.certificates.length, 2, 'leaf + intermediate');
  // Whole-second X.509 times: the expiry is rounded up, never cutting the TTL short.
  t.ok(svid.notAfter.getTime() >= before + 30_000, 'at least the full TTL');
  t.ok(svid.notAfter.getTime() <= Date.now() + 31_000, 'at most a second more');

  const leafFacts = certificateFacts(svid.certificates[0]!);
  t.equal(leafFacts.isCa, false);
  t.same(leafFacts.uriSans, ['spiffe://example.org/agents/a'], 'exactly one URI SAN');
  t.equal(leafFacts.keyUsage, KeyUsageBit.digitalSignature, 'KU digitalSignature only (EC key)');
  t.same(svid.certificates[0]!.keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'], 'EKU serverAuth + clientAuth');
  const interFacts = certificateFacts(svid.certificates[1]!);
  t.equal(interFacts.isCa, true);
  t.equal(interFacts.pathLength, 0);
  t.ok(svid.certificates[0]!.checkIssued(svid.certificates[1]!), 'leaf issued by intermediate');
  t.ok(svid.certificates[0]!.verify(svid.certificates[1]!.publicKey), 'leaf signature verifies');

  // Wire form and PEM form parse back to the same SVID.
  t.equal(parseX509SvidRaw(issued.certChainDer, issued.keyDer).id.toString(), svid.id.toString());
  t.equal(parseX509Svid(issued.certChainPem, issued.keyPem).certificates[0]!.serialNumber, svid.certificates[0]!.serialNumber);

  const [leafPem, interPem] = splitPem(issued.certChainPem);
  t.equal(interPem, ca.intermediatePem());
  for (const purpose of ['sslclient', 'sslserver']) {
    const r = opensslVerify(ca.rootPem(), interPem!, leafPem!, purpose);
    t.ok(r.ok, `openssl verify -purpose ${purpose}: ${r.out.trim()}`);
  }
  // Negative control: without the intermediate openssl cannot build the chain.
  const noInter = spawnSync('openssl', ['verify', '-CAfile', path.join(dir, 'root.pem'), path.join(dir, 'leaf.pem')], { encoding: 'utf8' });
  t.not(noInter.status, 0, 'openssl rejects the leaf without the intermediate');

  const text = execFileSync('openssl', ['x509', '-noout', '-text', '-in', path.join(dir, 'leaf.pem')], { encoding: 'utf8' });
  t.match(text, /CA:FALSE/);
  t.match(text, /URI:spiffe:\/\/example\.org\/agents\/a/);
  t.match(text, /ecdsa-with-SHA256/);
});

t.test('serials are random and distinct; RSA leaves get keyEncipherment', async (t) => {
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const a = await ca.issueX509Svid('spiffe://example.org/w');
  const b = await ca.issueX509Svid('spiffe://example.org/w');
  t.not(a.svid.certificates[0]!.serialNumber, b.svid.certificates[0]!.serialNumber);
  const rsa = await ca.issueX509Svid('spiffe://example.org/w', { keyType: 'rsa-2048' });
  t.equal(rsa.svid.privateKey.asymmetricKeyType, 'rsa');
  t.equal(certificateFacts(rsa.svid.certificates[0]!).keyUsage, KeyUsageBit.digitalSignature | KeyUsageBit.keyEncipherment);
  t.rejects(ca.issueX509Svid('spiffe://other.org/w'), withReason('dev_ca_wrong_trust_domain'));
  t.throws(() => parseSpiffeId('spiffe://example.org/'), 'sanity: id parser is strict');
});

t.test('issueCertificate makes odd certificates on request', async (t) => {
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const noSan = await ca.issueCertificate({ dnsNames: ['client.local'] });
  t.same(certificateFacts(noSan.certificate).uriSans, [], 'no URI SAN');
  t.match(noSan.certificate.subjectAltName ?? '', /DNS:client\.local/);
  t.throws(() => parseX509Svid(noSan.chainPem, noSan.keyPem), withReason('svid_no_uri_san'));

  const self = await ca.issueCertificate({ uris: ['spiffe://example.org/self'], selfSigned: true });
  t.equal(self.certificate.issuer, self.certificate.subject);
  t.ok(self.certificate.verify(self.certificate.publicKey), 'self-signed');
  t.equal(self.chainDer.length, self.certDer.length);

  const caCert = await ca.issueCertificate({ uris: ['spiffe://example.org/ca'], isCa: true });
  t.equal(certificateFacts(caCert.certificate).isCa, true);
  t.equal(certificateFacts(caCert.certificate).keyUsage, KeyUsageBit.keyCertSign | KeyUsageBit.cRLSign);

  const expired = await ca.issueCertificate({
    uris: ['spiffe://example.org/old'],
    notBefore: new Date(Date.now() - 7200_000),
    notAfter: new Date(Date.now() - 3600_000),
  });
  t.ok(new Date(expired.certificate.validTo).getTime() < Date.now(), 'expired on request');
});

t.test('rotation keeps the old root in the bundle until dropped', async (t) => {
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const before = await ca.issueX509Svid('spiffe://example.org/w');
  const oldRoot = ca.rootPem();
  t.equal(ca.bundle().authorities.length, 1);
  await ca.rotate();
  t.not(ca.rootPem(), oldRoot, 'new root');
  t.equal(ca.bundle().authorities.length, 2, 'old + new root');
  const after = await ca.issueX509Svid('spiffe://example.org/w');
  t.ok(opensslVerify(ca.rootPem(), '', after.certChainPem, 'sslclient').ok, 'new leaf verifies with the new root');
  t.notOk(opensslVerify(ca.rootPem(), '', before.certChainPem, 'sslclient').ok, 'old leaf does not verify with the new root alone');
  t.ok(opensslVerify(ca.bundle().toPem(), '', before.certChainPem, 'sslclient').ok, 'old leaf verifies with the bundle');
  ca.dropOldRoots();
  t.equal(ca.bundle().authorities.length, 1);
  t.equal(ca.bundle().toPem(), ca.rootPem());
});

t.test('SPIRE authority steps: prepare publishes, activate signs, taint marks, revoke removes', async (t) => {
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const first = ca.activeAuthorityId;
  const oldKids = [...ca.jwtBundle().authorities.keys()];
  const next = await ca.prepareAuthority();
  t.same(ca.listAuthorities().map((a) => [a.id, a.state, a.tainted]), [[first, 'active', false], [next, 'prepared', false]]);
  t.equal(ca.bundle().authorities.length, 2, 'the prepared root is published before it signs');
  t.equal(ca.jwtBundle().authorities.size, 2, 'so is its JWT key');
  t.equal((await ca.issueX509Svid('spiffe://example.org/w')).authorityId, first, 'the active authority still signs');
  t.throws(() => ca.activateAuthority('nope'), { reason: 'dev_ca_authority_invalid', message: 'unexpected authority ID' });
  t.throws(() => ca.taintAuthority(first), { reason: 'dev_ca_authority_invalid', message: 'unable to taint current local authority' });
  t.throws(() => ca.taintAuthority(next), { reason: 'dev_ca_authority_invalid', message: 'only Old local authorities can be tainted' });

  ca.activateAuthority(next);
  t.equal(ca.activeAuthorityId, next);
  const fresh = await ca.issueX509Svid('spiffe://example.org/w');
  t.equal(fresh.authorityId, next, 'the new authority signs');
  t.throws(() => ca.activateAuthority(), { reason: 'dev_ca_authority_invalid', message: 'only Prepared authorities can be activated' });
  t.throws(() => ca.revokeAuthority(first), { reason: 'dev_ca_authority_invalid', message: 'it is not possible to revoke an untainted root CA' });
  t.notOk(ca.isTainted(first));
  ca.taintAuthority(first);
  t.ok(ca.isTainted(first));
  t.throws(() => ca.taintAuthority(first), { reason: 'dev_ca_authority_invalid', message: 'root CA is already tainted' });
  t.equal(ca.bundle().authorities.length, 2, 'a tainted root is still trusted');
  ca.revokeAuthority(first);
  t.same(ca.listAuthorities().map((a) => [a.id, a.state]), [[next, 'active']]);
  t.equal(ca.bundle().toPem(), ca.rootPem(), 'the revoked root left the bundle');
  t.notOk(oldKids.some((kid) => ca.jwtBundle().authorities.has(kid)), 'and its JWT key left the JWT bundle');
});

t.test('chain "intermediate": the root stays (upstream), authorities are intermediates under it', async (t) => {
  const ca = await DevCa.create({ trustDomain: 'example.org', chain: 'intermediate' });
  const root = ca.rootPem();
  const before = await ca.issueX509Svid('spiffe://example.org/w');
  const first = ca.activeAuthorityId;
  await ca.rotate();
  t.equal(ca.rootPem(), root, 'same root');
  t.equal(ca.bundle().authorities.length, 1, 'bundle unchanged');
  const after = await ca.issueX509Svid('spiffe://example.org/w');
  t.not(splitPem(after.certChainPem)[1], splitPem(before.certChainPem)[1], 'new intermediate');
  t.ok(opensslVerify(root, splitPem(after.certChainPem)[1]!, splitPem(after.certChainPem)[0]!, 'sslclient').ok);
  t.throws(() => ca.taintAuthority(first), { reason: 'dev_ca_authority_invalid', message: "local authority can't be tainted if there is an upstream authority" });
});

t.test('JWT-SVIDs: ES256, sub/aud/exp, verify against the JWT bundle', async (t) => {
  const ca = await DevCa.create({ trustDomain: 'example.org' });
  const token = await ca.signJwtSvid('spiffe://example.org/w', ['svc-a', 'svc-b'], 60);
  const header = decodeProtectedHeader(token);
  t.equal(header.alg, 'ES256');
  const bundle = ca.jwtBundle();
  const key = bundle.findAuthority(String(header.kid));
  t.ok(key, 'kid is in the JWT bundle');
  // Independent check with node:crypto: JWS ES256 signature is r||s (IEEE P1363).
  const [h, p, s] = token.split('.');
  t.ok(cryptoVerify('sha256', Buffer.from(`${h}.${p}`), { key: key!, dsaEncoding: 'ieee-p1363' }, Buffer.from(s!, 'base64url')));

  const v = await ca.verifyJwtSvid(token, 'svc-b');
  t.equal(v.spiffeId.toString(), 'spiffe://example.org/w');
  t.same(v.claims.aud, ['svc-a', 'svc-b']);
  t.ok(typeof v.claims.exp === 'number');
  await t.rejects(ca.verifyJwtSvid(token, 'svc-c'), withReason('jwt_svid_invalid'), 'wrong audience');
  await t.rejects(ca.verifyJwtSvid(`${h}.${p}.${Buffer.alloc(64).toString('base64url')}`, 'svc-a'), withReason('jwt_svid_invalid'), 'bad signature');
  await t.rejects(ca.verifyJwtSvid('not-a-jwt', 'svc-a'), withReason('jwt_svid_invalid'));

  const single = await ca.signJwtSvid('spiffe://example.org/w', ['svc-a']);
  t.same(decodeJwt(single).aud, ['svc-a'], 'aud is a list even for one audience (as SPIRE sends it)');

  const other = await DevCa.create({ trustDomain: 'example.org' });
  await t.rejects(ca.verifyJwtSvid(await other.signJwtSvid('spiffe://example.org/w', ['svc-a']), 'svc-a'), withReason('jwt_svid_invalid'), 'other CA key');

  await ca.rotate();
  t.equal(ca.jwtBundle().authorities.size, 2, 'old JWT key kept after rotation');
  t.ok(await ca.verifyJwtSvid(token, 'svc-a'), 'old token still verifies');
  ca.dropOldRoots();
  await t.rejects(ca.verifyJwtSvid(token, 'svc-a'), withReason('jwt_svid_invalid'), 'old key dropped');
});
