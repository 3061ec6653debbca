/**
 * stillAnchored: what a bundle change re-checks for an open connection. The peer stays trusted
 * while its trust domain's bundle holds the authority its chain was verified to, or a re-issue
 * of it (same subject and key); not once that authority is gone, nor under another domain.
 */
import 'reflect-metadata';
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { ECDSA_SHA256, generateKeys, randomSerialHex, webcrypto } from '../../src/dev/ca-keys.js';
import { DevCa } from '../../src/dev/ca.js';
import { BundleSet } from '../../src/spiffe/bundle/bundle-set.js';
import { X509Bundle } from '../../src/spiffe/bundle/x509-bundle.js';
import { parseTrustDomain } from '../../src/spiffe/id.js';
import { stillAnchored, verifyPeer } from '../../src/spiffe/tls.js';

const TD = parseTrustDomain('anchor.test');
const set = (...bundles: X509Bundle[]) => new BundleSet(bundles);

t.test('the authority the chain was verified to', async (t) => {
  const ca = await DevCa.create({ trustDomain: TD });
  const svid = await ca.issueX509Svid('spiffe://anchor.test/peer');
  const held = set(ca.bundle());
  const peer = verifyPeer(svid.svid.certificates, held, new Date());
  t.equal(peer.anchor?.fingerprint256, new X509Certificate(ca.rootPem()).fingerprint256, 'verification records the root it ended at');
  t.ok(stillAnchored(peer, held), 'held: still anchored');

  await ca.rotate();
  t.ok(stillAnchored(peer, set(ca.bundle())), 'a new root beside the old one: still anchored');
  ca.dropOldRoots();
  t.notOk(stillAnchored(peer, set(ca.bundle())), 'the old root dropped: no longer anchored');
  t.notOk(stillAnchored(peer, set()), 'no bundle for the domain: no longer anchored');
  const oldRoot = peer.anchor!;
  t.notOk(stillAnchored(peer, set(ca.bundle(), new X509Bundle(parseTrustDomain('other.test'), [oldRoot]))), 'the old root held only under another trust domain does not count');
  t.notOk(stillAnchored({ ...peer, anchor: undefined }, held), 'a peer without a recorded anchor is not trusted');
});

t.test('a re-issued root (same subject and key) keeps the peer anchored', async (t) => {
  const keys = await generateKeys('ec-p256');
  const rootOf = async () =>
    new X509Certificate(Buffer.from(
      (
        await x509.X509CertificateGenerator.createSelfSigned(
          {
            serialNumber: randomSerialHex(),
            name: 'CN=anchor root',
            notBefore: new Date(Date.now() - 60_000),
            notAfter: new Date(Date.now() + 3_600_000),
            keys,
            signingAlgorithm: ECDSA_SHA256,
            extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
          },
          webcrypto,
        )
      ).rawData,
    ));
  const root = await rootOf();
  const reissued = await rootOf();
  t.not(reissued.fingerprint256, root.fingerprint256, 'a different certificate');
  const leafKeys = await generateKeys('ec-p256');
  const leaf = new X509Certificate(Buffer.from(
    (
      await x509.X509CertificateGenerator.create(
        {
          serialNumber: randomSerialHex(),
          subject: 'CN=peer',
          issuer: 'CN=anchor root',
          notBefore: new Date(Date.now() - 60_000),
          notAfter: new Date(Date.now() + 3_600_000),
          publicKey: leafKeys.publicKey,
          signingKey: keys.privateKey,
          signingAlgorithm: ECDSA_SHA256,
          extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: 'spiffe://anchor.test/peer' }]), new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)],
        },
        webcrypto,
      )
    ).rawData,
  ));
  const peer = verifyPeer([leaf], set(new X509Bundle(TD, [root])), new Date());
  t.ok(stillAnchored(peer, set(new X509Bundle(TD, [reissued]))), 'the re-issued root anchors it');
});
