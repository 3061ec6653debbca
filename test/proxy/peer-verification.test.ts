// verifyPeerCertificate: a verification is reused only for the byte-identical chain, against the
// same bundle source, from the time it was made until its stableUntilMs; otherwise it is redone.
// The peer certificate comes from a real mTLS connection (Node's getPeerCertificate(true)).
import t from 'tap';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { DetailedPeerCertificate } from 'node:tls';
import { DevCa } from '../../src/dev/ca.js';
import { BundleSet } from '../../src/spiffe/bundle/bundle-set.js';
import { X509Bundle } from '../../src/spiffe/bundle/x509-bundle.js';
import { parseTrustDomain } from '../../src/spiffe/id.js';
import { parseCertificatesPem } from '../../src/spiffe/x509.js';
import { peerCertificate, verifyPeer, verifyPeerCertificate, chainFromDetailed } from '../../src/spiffe/tls.js';

const td = parseTrustDomain('cache.test');

/** The detailed certificate a server sees for a client presenting `client` (leaf + intermediate). */
async function presentedBy(ca: DevCa, client: { certChainPem: string; keyPem: string }): Promise<DetailedPeerCertificate> {
  const server = await ca.issueX509Svid('spiffe://cache.test/server', { ttlSeconds: 3600 });
  const caPem = ca.bundle().toPem();
  return new Promise((resolve, reject) => {
    const srv = tls.createServer({ cert: server.certChainPem, key: server.keyPem, ca: caPem, requestCert: true, rejectUnauthorized: true }, (socket) => {
      try {
        resolve(peerCertificate(socket));
      } catch (err) {
        reject(err);
      }
      socket.destroy();
      srv.close();
    });
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as AddressInfo).port;
      tls.connect({ port, host: '127.0.0.1', cert: client.certChainPem, key: client.keyPem, ca: caPem, checkServerIdentity: () => undefined }).on('error', () => undefined);
    });
  });
}

function bundleOf(ca: DevCa): BundleSet {
  return new BundleSet([new X509Bundle(td, parseCertificatesPem(ca.bundle().toPem()))]);
}

t.test('the same chain against the same bundles is verified once, then reused within its window', async (t) => {
  const ca = await DevCa.create({ trustDomain: 'cache.test' });
  const agent = await ca.issueX509Svid('spiffe://cache.test/agent', { ttlSeconds: 600 });
  const cert = await presentedBy(ca, agent);
  t.ok(chainFromDetailed(cert).length >= 2, 'the presented chain carries the intermediate');
  const bundles = bundleOf(ca);
  const now = Date.now();
  const first = verifyPeerCertificate(cert, bundles, now);
  t.equal(first.id, 'spiffe://cache.test/agent');
  t.same(first, verifyPeer(chainFromDetailed(cert), bundles, new Date(now)), 'the same answer as a fresh verification');
  t.equal(verifyPeerCertificate(cert, bundles, now + 1000), first, 'reused one second later');
  t.equal(verifyPeerCertificate(cert, bundles, first.notAfterMs), first, 'reused up to notAfter inclusive');
  t.ok(Object.isFrozen(first), 'a shared result cannot be changed by one connection');

  // Past notAfter it is verified again, and refused.
  t.throws(() => verifyPeerCertificate(cert, bundles, first.notAfterMs + 1), { name: 'SvidVerificationError', reason: 'svid_expired' });
  // A clock that went back verifies afresh (a new object, the same answer).
  const earlier = verifyPeerCertificate(cert, bundles, now - 1000);
  t.not(earlier, first, 'before the cached verification: verified again');
  t.same(earlier, first);
  // Another bundle source (e.g. after a bundle update) verifies afresh.
  const other = verifyPeerCertificate(cert, bundleOf(ca), now);
  t.not(other, first, 'a new bundle source: verified again');
});

t.test('a chain that fails is never reused, and does not poison its trust domain', async (t) => {
  const ca = await DevCa.create({ trustDomain: 'cache.test' });
  const foreign = await DevCa.create({ trustDomain: 'cache.test' }); // claims our trust domain
  const agent = await foreign.issueX509Svid('spiffe://cache.test/agent', { ttlSeconds: 600 });
  const cert = await presentedBy(foreign, agent);
  const ours = bundleOf(ca);
  const now = Date.now();
  t.throws(() => verifyPeerCertificate(cert, ours, now), { name: 'SvidVerificationError', reason: 'svid_untrusted' });
  t.throws(() => verifyPeerCertificate(cert, ours, now + 1), { name: 'SvidVerificationError', reason: 'svid_untrusted' }, 'still refused: failures are not kept');
  // Verified against its own CA's bundle it passes; that success is not reused for ours.
  t.equal(verifyPeerCertificate(cert, bundleOf(foreign), now).id, 'spiffe://cache.test/agent');
  t.throws(() => verifyPeerCertificate(cert, ours, now + 2), { name: 'SvidVerificationError', reason: 'svid_untrusted' });
});

t.test('a different chain is never answered from another chain\'s entry', async (t) => {
  const ca = await DevCa.create({ trustDomain: 'cache.test' });
  const bundles = bundleOf(ca);
  const a = await presentedBy(ca, await ca.issueX509Svid('spiffe://cache.test/a', { ttlSeconds: 600 }));
  const b = await presentedBy(ca, await ca.issueX509Svid('spiffe://cache.test/b', { ttlSeconds: 600 }));
  const now = Date.now();
  t.equal(verifyPeerCertificate(a, bundles, now).id, 'spiffe://cache.test/a');
  t.equal(verifyPeerCertificate(b, bundles, now).id, 'spiffe://cache.test/b');
  t.equal(verifyPeerCertificate(a, bundles, now).id, 'spiffe://cache.test/a');
});

t.test('the cache is bounded: the oldest entries go first', async (t) => {
  const ca = await DevCa.create({ trustDomain: 'cache.test', chain: 'intermediate' });
  const bundles = bundleOf(ca);
  // Detailed certificates as Node reports them (raw DER, fingerprint256, issuer links), for 257
  // distinct leaves under one intermediate, without 257 handshakes.
  const detailed = (pem: string): DetailedPeerCertificate => {
    const [leaf, mid] = parseCertificatesPem(pem).map((c: X509Certificate) => ({ raw: c.raw, fingerprint256: c.fingerprint256 }) as DetailedPeerCertificate);
    leaf!.issuerCertificate = mid!;
    return leaf!;
  };
  const certs: DetailedPeerCertificate[] = [];
  for (let i = 0; i < 257; i++) certs.push(detailed((await ca.issueX509Svid(`spiffe://cache.test/w${i}`, { ttlSeconds: 600 })).certChainPem));
  const now = Date.now();
  const results = certs.map((c) => verifyPeerCertificate(c, bundles, now));
  t.equal(verifyPeerCertificate(certs[256]!, bundles, now), results[256], 'the newest is kept');
  t.not(verifyPeerCertificate(certs[0]!, bundles, now), results[0], 'the oldest was evicted and is verified again');
});
