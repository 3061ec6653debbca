// verifyX509Svid: go-spiffe's x509svid.Verify cases (PROVENANCE.md) on run-time generated
// certificates, path-building and cross-domain cases, go-spiffe fixtures at fixed times,
// and a cross-check against the real `openssl verify`.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { customExtension, KU, makeCa, makeIntermediate, makeLeaf, TestCert } from '../helpers/certs.js';
import { readConformance, spiffeConformance } from '../helpers/spiffe-conformance.js';
import { parseTrustDomain } from '../../src/spiffe/id.js';
import { X509Bundle, X509BundleSource } from '../../src/spiffe/bundle/x509-bundle.js';
import { BundleSet } from '../../src/spiffe/bundle/bundle-set.js';
import { SvidVerificationError, SvidVerificationReason, verifyX509Svid } from '../../src/spiffe/verify.js';
import { parseCertificatesPem } from '../../src/spiffe/x509.js';

const HOUR = 3600_000;
const now = new Date();
const td1 = parseTrustDomain('domain1.test');
const td2 = parseTrustDomain('domain2.test');

function rejects(
  t: Test,
  certs: readonly X509Certificate[],
  bundles: X509BundleSource,
  reason: SvidVerificationReason,
  message: RegExp | string,
  at: Date = now,
): void {
  t.throws(() => verifyX509Svid(certs, bundles, at), { name: 'SvidVerificationError', reason, message }, reason);
}

t.test('go-spiffe Verify cases and path building', async (t) => {
  const root1 = await makeCa({ td: 'domain1.test', name: 'Root' });
  const root2 = await makeCa({ td: 'domain2.test', name: 'Root' }); // same subject name on purpose
  const mid1 = await makeIntermediate(root1, { td: 'domain1.test' });
  const bundles = new BundleSet([new X509Bundle(td1, [root1.cert]), new X509Bundle(td2, [root2.cert])]);
  const leafOpts = { uris: ['spiffe://domain1.test/workload'] };

  t.test('accepts a leaf signed directly by a bundle root', async (t) => {
    const leaf = await makeLeaf(root1, leafOpts);
    const v = verifyX509Svid([leaf.cert], bundles, now);
    t.equal(v.id.toString(), 'spiffe://domain1.test/workload');
    t.same(v.chain.map((c) => c.fingerprint256), [leaf.cert.fingerprint256, root1.cert.fingerprint256]);
    const spki = leaf.cert.publicKey.export({ type: 'spki', format: 'der' });
    t.same(v.spkiSha256, createHash('sha256').update(spki).digest());
    t.equal(v.notAfter.getTime(), Math.min(...v.chain.map((c) => new Date(c.validTo).getTime())));
  });

  t.test('accepts a chain through an intermediate; notAfter is the earliest on the chain', async (t) => {
    const shortMid = await makeIntermediate(root1, { notAfter: new Date(now.getTime() + 2 * HOUR) });
    const leaf = await makeLeaf(shortMid, leafOpts);
    const v = verifyX509Svid(leaf.chain, bundles, now);
    t.same(v.chain.map((c) => c.fingerprint256), [leaf.cert, shortMid.cert, root1.cert].map((c) => c.fingerprint256));
    t.equal(v.notAfter.getTime(), new Date(shortMid.cert.validTo).getTime());
  });

  t.test('Verify does not demand digitalSignature (unlike Parse)', async (t) => {
    const leaf = await makeLeaf(root1, { ...leafOpts, keyUsages: KU.keyAgreement });
    t.equal(verifyX509Svid([leaf.cert], bundles, now).id.path, '/workload');
    const noKu = await makeLeaf(root1, { ...leafOpts, keyUsages: null });
    t.equal(verifyX509Svid([noKu.cert], bundles, now).id.path, '/workload');
  });

  t.test('empty chain / no bundle source', async (t) => {
    rejects(t, [], bundles, 'svid_chain_empty', 'empty certificate chain');
    rejects(t, [root1.cert], undefined as unknown as X509BundleSource, 'svid_no_bundle', 'no bundle source');
  });

  t.test('no bundle for the leaf trust domain', async (t) => {
    const leaf = await makeLeaf(mid1, leafOpts);
    rejects(t, leaf.chain, new BundleSet([new X509Bundle(td2, [root2.cert])]), 'svid_no_bundle', 'no X.509 bundle for trust domain "domain1.test"');
    // a bundle source that answers with another domain's bundle is not believed
    const liar: X509BundleSource = { getX509Bundle: () => new X509Bundle(td2, [root1.cert]) };
    rejects(t, leaf.chain, liar, 'svid_no_bundle', /returned trust domain "domain2.test" for "domain1.test"/);
  });

  t.test('leaf identity problems', async (t) => {
    const notSpiffe = await makeLeaf(root1, { uris: ['https://domain1.test/workload'] });
    rejects(t, [notSpiffe.cert], bundles, 'svid_invalid_spiffe_id', /scheme is missing or invalid/);
    const noUri = await makeLeaf(root1, { uris: [] });
    rejects(t, [noUri.cert], bundles, 'svid_no_uri_san', 'leaf certificate contains no URI SAN');
    const two = await makeLeaf(root1, { uris: ['spiffe://domain1.test/a', 'spiffe://domain1.test/b'] });
    rejects(t, [two.cert], bundles, 'svid_multiple_uri_san', /more than one URI SAN/);
    const badTd = await makeLeaf(root1, { uris: ['spiffe://Domain1.test/workload'] });
    rejects(t, [badTd.cert], bundles, 'svid_invalid_spiffe_id', /trust domain characters/);
  });

  t.test('leaf CA flag and key usage', async (t) => {
    const ca = await makeLeaf(root1, { ...leafOpts, ca: true });
    rejects(t, [ca.cert], bundles, 'svid_leaf_is_ca', /CA flag/);
    const certSign = await makeLeaf(root1, { ...leafOpts, keyUsages: KU.digitalSignature | KU.keyCertSign });
    rejects(t, [certSign.cert], bundles, 'svid_leaf_key_usage', /keyCertSign/);
    const crlSign = await makeLeaf(root1, { ...leafOpts, keyUsages: KU.digitalSignature | KU.cRLSign });
    rejects(t, [crlSign.cert], bundles, 'svid_leaf_key_usage', /cRLSign/);
  });

  t.test('intermediates must be CAs with keyCertSign', async (t) => {
    const notCa = await makeIntermediate(root1, { ca: false, keyUsages: KU.keyCertSign });
    const leaf = await makeLeaf(notCa, leafOpts);
    rejects(t, leaf.chain, bundles, 'svid_intermediate_not_ca', /is not a CA/);
    const noCertSign = await makeIntermediate(root1, { keyUsages: KU.cRLSign });
    const leaf2 = await makeLeaf(noCertSign, leafOpts);
    rejects(t, leaf2.chain, bundles, 'svid_intermediate_not_ca', /lacks keyCertSign/);
  });

  t.test('does not chain to a bundle root', async (t) => {
    const otherRoot = await makeCa({ td: 'domain1.test', name: 'Root' });
    const leaf = await makeLeaf(otherRoot, leafOpts);
    rejects(t, [leaf.cert], bundles, 'svid_untrusted', 'leaf certificate spiffe://domain1.test/workload does not chain to the X.509 bundle of trust domain "domain1.test"');
    // missing intermediate
    const viaMid = await makeLeaf(mid1, leafOpts);
    rejects(t, [viaMid.cert], bundles, 'svid_untrusted', /does not chain/);
  });

  t.test('a foreign CA claiming our trust domain is rejected even though it is in another domain’s bundle', async (t) => {
    // root2 is trusted for domain2.test and has the same subject DN as root1.
    const forged = await makeLeaf(root2, leafOpts);
    rejects(t, [forged.cert], bundles, 'svid_untrusted', /does not chain to the X.509 bundle of trust domain "domain1.test"/);
    const forgedMid = await makeIntermediate(root2, { td: 'domain1.test' });
    const forgedViaMid = await makeLeaf(forgedMid, leafOpts);
    rejects(t, forgedViaMid.chain, bundles, 'svid_untrusted', /does not chain/);
    // ... and the same leaf is fine for the domain it really belongs to
    const legit = await makeLeaf(root2, { uris: ['spiffe://domain2.test/workload'] });
    t.equal(verifyX509Svid([legit.cert], bundles, now).id.trustDomain.name, 'domain2.test');
    // forged issuer linkage (same issuer DN, AKI naming root1's key, or no AKI): only the
    // signature check stands between these and acceptance
    for (const akiFrom of [root1, null]) {
      const sneaky = await makeLeaf(root2, { ...leafOpts, akiFrom });
      t.ok(sneaky.cert.checkIssued(root1.cert), 'names and key ids claim root1 issued it');
      rejects(t, [sneaky.cert], bundles, 'svid_untrusted', /does not chain/);
    }
    // presenting the foreign root itself as an "intermediate" does not help either
    rejects(t, [forged.cert, root2.cert], bundles, 'svid_untrusted', /does not chain/);
  });

  t.test('out-of-order and extra intermediates', async (t) => {
    const midA = await makeIntermediate(root1, { name: 'Mid A' });
    const midB = await makeIntermediate(midA, { name: 'Mid B' });
    const midC = await makeIntermediate(midB, { name: 'Mid C' });
    const leaf = await makeLeaf(midC, leafOpts);
    const unrelated = await makeCa({ td: 'domain1.test', name: 'Mid B' }); // name collision with midB
    const expect = [leaf, midC, midB, midA, root1].map((c) => c.cert.fingerprint256);
    for (const presented of [
      [leaf.cert, midC.cert, midB.cert, midA.cert],
      [leaf.cert, midA.cert, midB.cert, midC.cert],
      [leaf.cert, midB.cert, midA.cert, midC.cert],
      [leaf.cert, unrelated.cert, midA.cert, root1.cert, midC.cert, midB.cert],
    ]) {
      t.same(verifyX509Svid(presented, bundles, now).chain.map((c) => c.fingerprint256), expect);
    }
  });

  t.test('validity at `now` for every certificate on the path', async (t) => {
    const leaf = await makeLeaf(mid1, leafOpts);
    t.ok(verifyX509Svid(leaf.chain, bundles, now), 'verifies now (and caches the links)');
    rejects(t, leaf.chain, bundles, 'svid_expired', /leaf certificate .* expired at/, new Date(now.getTime() + 48 * HOUR));
    rejects(t, leaf.chain, bundles, 'svid_not_yet_valid', /leaf certificate .* is not valid before/, new Date(now.getTime() - 2 * HOUR));

    const expiredMid = await makeIntermediate(root1, { notBefore: new Date(now.getTime() - 10 * HOUR), notAfter: new Date(now.getTime() - HOUR) });
    const leafE = await makeLeaf(expiredMid, leafOpts);
    rejects(t, leafE.chain, bundles, 'svid_expired', /intermediate certificate .* expired at/);

    const futureMid = await makeIntermediate(root1, { notBefore: new Date(now.getTime() + HOUR) });
    const leafF = await makeLeaf(futureMid, leafOpts);
    rejects(t, leafF.chain, bundles, 'svid_not_yet_valid', /intermediate certificate .* is not valid before/);

    const expiredRoot = await makeCa({ td: 'domain1.test', notBefore: new Date(now.getTime() - 10 * HOUR), notAfter: new Date(now.getTime() - HOUR) });
    const leafR = await makeLeaf(expiredRoot, { ...leafOpts, notBefore: new Date(now.getTime() - 9 * HOUR) });
    rejects(t, [leafR.cert], new X509Bundle(td1, [expiredRoot.cert]), 'svid_expired', /bundle authority .* expired at/);

    // the same chain is fine at a time inside every certificate's window
    t.ok(verifyX509Svid([leafR.cert], new X509Bundle(td1, [expiredRoot.cert]), new Date(now.getTime() - 2 * HOUR)), 'fine at a time inside the window');
  });

  t.test('constraints: path length, unknown critical extensions, SHA-1, depth bound', async (t) => {
    const rootPl0 = await makeCa({ td: 'domain1.test', pathLength: 0 });
    const midPl = await makeIntermediate(rootPl0);
    const leafPl = await makeLeaf(midPl, leafOpts);
    rejects(t, leafPl.chain, new X509Bundle(td1, [rootPl0.cert]), 'svid_untrusted', /path length constraint/);
    const leafDirect = await makeLeaf(rootPl0, leafOpts);
    t.ok(verifyX509Svid([leafDirect.cert], new X509Bundle(td1, [rootPl0.cert]), now), 'pathLen 0 allows a direct leaf');

    const critical = customExtension('1.2.3.4.5', true, new Uint8Array([0x05, 0x00]));
    const leafCrit = await makeLeaf(root1, { ...leafOpts, extensions: [critical] });
    rejects(t, [leafCrit.cert], bundles, 'svid_malformed', /unhandled critical extension\(s\) 1\.2\.3\.4\.5/);
    const midCrit = await makeIntermediate(root1, { extensions: [critical] });
    const leafViaCrit = await makeLeaf(midCrit, leafOpts);
    rejects(t, leafViaCrit.chain, bundles, 'svid_untrusted', /unhandled critical extension/);

    const sha1Leaf = await makeLeaf(root1, { ...leafOpts, hash: 'SHA-1' });
    rejects(t, [sha1Leaf.cert], bundles, 'svid_untrusted', /weak \(MD5\/SHA-1\) signature/);

    // 9 intermediates: longer than MAX_CHAIN_DEPTH
    let issuer: TestCert = root1;
    for (let i = 0; i < 9; i++) issuer = await makeIntermediate(issuer, { name: `Deep ${i}` });
    const deep = await makeLeaf(issuer, leafOpts);
    t.equal(deep.chain.length, 10);
    rejects(t, deep.chain, bundles, 'svid_untrusted', /does not chain/);
    t.ok(verifyX509Svid(deep.chain.slice(0, 1), new X509Bundle(td1, [issuer.cert]), now), 'fine when the bundle holds the last intermediate');
  });

  t.test('garbage certificates are svid_malformed, never a crash', async (t) => {
    // A DER certificate whose SAN extension value is not valid ASN.1 (OpenSSL still loads it).
    const badSan = customExtension('2.5.29.17', false, new Uint8Array([0x30, 0x03, 0x86, 0x05, 0x61]));
    const leaf = await makeLeaf(root1, { uris: [], extensions: [badSan] });
    rejects(t, [leaf.cert], bundles, 'svid_malformed', /malformed certificate: cannot parse extension 2\.5\.29\.17/);
  });
});

t.test('go-spiffe fixtures at fixed times', async (t) => {
  const dir = spiffeConformance(t);
  if (!dir) return;
  const [leaf, intermediate] = parseCertificatesPem(readConformance(dir, 'x509svid/good-leaf-and-intermediate.pem'));
  const exampleOrg = parseTrustDomain('example.org');
  const bundle = new X509Bundle(exampleOrg, [intermediate!]);
  const at = new Date('2020-03-24T14:30:00Z');
  const v = verifyX509Svid([leaf!], bundle, at);
  t.equal(v.id.toString(), 'spiffe://example.org/workload-1');
  t.same(v.chain.map((c) => c.fingerprint256), [leaf!.fingerprint256, intermediate!.fingerprint256]);
  t.ok(verifyX509Svid([leaf!, intermediate!], bundle, at), 'the intermediate may also be presented');
  rejects(t, [leaf!], bundle, 'svid_expired', /expired at/, new Date('2020-03-24T16:00:00Z'));
  rejects(t, [leaf!], bundle, 'svid_expired', /expired/, new Date()); // go-spiffe fixtures are expired today
  rejects(t, [leaf!], new X509Bundle(parseTrustDomain('example.com'), [intermediate!]), 'svid_no_bundle', 'no X.509 bundle for trust domain "example.org"', at);

  // RSA leaf whose issuer is not in the bundle: untrusted at a time where everything is valid
  const [rsaLeaf] = parseCertificatesPem(readConformance(dir, 'x509svid/good-leaf-only.pem'));
  rejects(t, [rsaLeaf!], bundle, 'svid_untrusted', /does not chain/, new Date('2020-04-01T00:00:00Z'));
  // the spiffebundle x5c authority has URI spiffe://local and is a CA: as a leaf it is refused
  const [caAsLeaf] = parseCertificatesPem(readConformance(dir, 'x509svid/wrong-leaf-ca-true.pem'));
  rejects(t, [caAsLeaf!], new X509Bundle(exampleOrg, [intermediate!]), 'svid_leaf_is_ca', /CA flag/, new Date('2020-04-01T00:00:00Z'));
});

t.test('cross-check with the openssl CLI', async (t) => {
  const root = await makeCa({ td: 'domain1.test' });
  const mid = await makeIntermediate(root);
  const leaf = await makeLeaf(mid, { uris: ['spiffe://domain1.test/w'] });
  const foreign = await makeCa({ td: 'domain1.test' });
  const dir = mkdtempSync(join(tmpdir(), 'verify-openssl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'root.pem'), root.pem);
  writeFileSync(join(dir, 'foreign.pem'), foreign.pem);
  writeFileSync(join(dir, 'mid.pem'), mid.pem);
  writeFileSync(join(dir, 'leaf.pem'), leaf.pem);
  const opensslVerify = (caFile: string) =>
    spawnSync('openssl', ['verify', '-CAfile', caFile, '-untrusted', 'mid.pem', 'leaf.pem'], { cwd: dir, encoding: 'utf8' });

  const pass = opensslVerify('root.pem');
  t.equal(pass.status, 0, `openssl verify passes: ${pass.stdout}${pass.stderr}`);
  t.match(pass.stdout, /leaf\.pem: OK/);
  t.ok(verifyX509Svid([leaf.cert, mid.cert], new X509Bundle(td1, [root.cert]), now), 'we pass too');

  const failRun = opensslVerify('foreign.pem');
  t.not(failRun.status, 0, 'openssl verify fails against a foreign root');
  t.match(failRun.stdout + failRun.stderr, /unable to get (local )?issuer certificate/);
  t.throws(() => verifyX509Svid([leaf.cert, mid.cert], new X509Bundle(td1, [foreign.cert]), now), SvidVerificationError, 'we fail too');

  // and the leaf SPKI hash matches openssl's DER public key
  const spki = spawnSync('sh', ['-c', 'openssl x509 -in leaf.pem -pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r'], {
    cwd: dir,
    encoding: 'utf8',
  });
  t.equal(spki.stdout.split(' ')[0], verifyX509Svid([leaf.cert, mid.cert], new X509Bundle(td1, [root.cert]), now).spkiSha256.toString('hex'));
});

t.test('stableUntilMs: the path\'s earliest notAfter, or just before a candidate becomes valid', async (t) => {
  const at = Date.now();
  const root = await makeCa({ td: 'domain1.test', notAfter: new Date(at + 30 * HOUR) });
  const mid = await makeIntermediate(root, { td: 'domain1.test', notAfter: new Date(at + 20 * HOUR) });
  const leaf = await makeLeaf(mid, { uris: ['spiffe://domain1.test/w'], notAfter: new Date(at + 10 * HOUR) });
  const chain = [leaf.cert, mid.cert];
  const plain = new BundleSet([new X509Bundle(td1, [root.cert])]);
  const v = verifyX509Svid(chain, plain, new Date(at));
  t.equal(v.stableUntilMs, v.notAfter.getTime(), 'no candidate to wait for: the path\'s notAfter');
  t.equal(v.notAfter.getTime(), new Date(leaf.cert.validTo).getTime(), 'the leaf expires first');

  // A bundle authority that becomes valid in 2 h could start another path then.
  const later = await makeCa({ td: 'domain1.test', notBefore: new Date(at + 2 * HOUR) });
  const withLater = new BundleSet([new X509Bundle(td1, [root.cert, later.cert])]);
  const w = verifyX509Svid(chain, withLater, new Date(at));
  t.equal(w.stableUntilMs, new Date(later.cert.validFrom).getTime() - 1, 'a future bundle authority ends the window');
  // Once it is valid, it no longer bounds the window.
  const w2 = verifyX509Svid(chain, withLater, new Date(at + 3 * HOUR));
  t.equal(w2.stableUntilMs, w2.notAfter.getTime());

  // So does a presented intermediate that is not valid yet.
  const futureMid = await makeIntermediate(root, { td: 'domain1.test', notBefore: new Date(at + HOUR) });
  const x = verifyX509Svid([leaf.cert, mid.cert, futureMid.cert], plain, new Date(at));
  t.equal(x.stableUntilMs, new Date(futureMid.cert.validFrom).getTime() - 1, 'a future presented intermediate ends the window');
});
