// go-spiffe x509svid.Parse / ParseRaw fixtures (shared/conformance/spiffe/x509svid) with the
// outcomes PROVENANCE.md states, plus run-time generated cases.
import t from 'tap';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { readConformance, spiffeConformance } from '../helpers/spiffe-conformance.js';
import { makeCa, makeIntermediate, makeLeaf, opensslIssueLeaf } from '../helpers/certs.js';
import { parseX509Svid, parseX509SvidRaw, svidChainPem, svidKeyPem, X509SvidErrorReason } from '../../src/spiffe/svid.js';
import { certificateFacts, KeyUsageBit, spkiSha256 } from '../../src/spiffe/x509.js';
import { decodePemBlocks } from '../../src/spiffe/pem.js';

const WORKLOAD = 'spiffe://example.org/workload-1';

t.test('go-spiffe x509svid fixtures', async (t) => {
  const dir = spiffeConformance(t);
  if (!dir) return;
  const read = (name: string) => readConformance(dir, `x509svid/${name}`);

  t.test('accepted', async (t) => {
    const accepted: [string, string, number][] = [
      ['good-leaf-only.pem', 'key-pkcs8-rsa.pem', 1],
      ['good-leaf-and-intermediate.pem', 'key-pkcs8-ecdsa.pem', 2],
      ['good-key-and-cert.pem', 'good-key-and-cert.pem', 1],
      ['good-cert-and-key.pem', 'good-cert-and-key.pem', 1],
    ];
    for (const [certFile, keyFile, count] of accepted) {
      const svid = parseX509Svid(read(certFile), read(keyFile), 'internal');
      t.equal(svid.id.toString(), WORKLOAD, `${certFile}: ID`);
      t.equal(svid.certificates.length, count, `${certFile}: certificate count`);
      t.equal(svid.hint, 'internal');
      t.ok(createPublicKey(svid.privateKey).equals(svid.certificates[0]!.publicKey), `${certFile}: key matches leaf`);
      t.equal(svid.notAfter.getTime(), new Date(svid.certificates[0]!.validTo).getTime(), `${certFile}: notAfter of the leaf`);
      t.equal(svid.notBefore.getTime(), new Date(svid.certificates[0]!.validFrom).getTime());
      // the PEM outputs round-trip and are usable by node's TLS stack
      const again = parseX509Svid(svidChainPem(svid), svidKeyPem(svid));
      t.ok(again.id.equals(svid.id));
      t.same(again.certificates.map((c) => c.fingerprint256), svid.certificates.map((c) => c.fingerprint256));
      t.doesNotThrow(() => createSecureContext({ cert: svidChainPem(svid), key: svidKeyPem(svid) }), `${certFile}: usable in a SecureContext`);
    }
    t.equal(parseX509Svid(read('good-leaf-only.pem'), read('key-pkcs8-rsa.pem')).hint, '', 'default hint is empty');
  });

  t.test('rejected', async (t) => {
    const rejected: [string, string, X509SvidErrorReason, string | RegExp][] = [
      ['key-pkcs8-rsa.pem', 'key-pkcs8-rsa.pem', 'svid_no_certificates', 'x509svid: certificate validation failed: no certificates found'],
      ['good-leaf-only.pem', 'good-leaf-only.pem', 'svid_no_private_key', 'x509svid: private key validation failed: no private key found'],
      ['good-leaf-only.pem', 'not-pem', 'svid_key_parse_failed', 'x509svid: cannot parse PEM encoded private key: no PEM blocks found'],
      ['not-pem', 'key-pkcs8-rsa.pem', 'svid_cert_parse_failed', 'x509svid: cannot parse PEM encoded certificate: no PEM blocks found'],
      ['good-leaf-only.pem', 'corrupt-key.pem', 'svid_key_parse_failed', /^x509svid: cannot parse PEM encoded private key: /],
      ['corrupt-cert.pem', 'key-pkcs8-rsa.pem', 'svid_cert_parse_failed', /^x509svid: cannot parse PEM encoded certificate: malformed certificate/],
      ['good-leaf-and-intermediate.pem', 'key-pkcs8-rsa.pem', 'svid_key_mismatch', 'x509svid: private key validation failed: leaf certificate does not match private key'],
      [
        'wrong-leaf-empty-id.pem',
        'key-pkcs8-rsa.pem',
        'svid_no_uri_san',
        'x509svid: certificate validation failed: cannot get leaf certificate SPIFFE ID: certificate contains no URI SAN',
      ],
      ['wrong-leaf-ca-true.pem', 'key-pkcs8-rsa.pem', 'svid_leaf_is_ca', 'x509svid: certificate validation failed: leaf certificate must not have CA flag set to true'],
      [
        'wrong-leaf-no-digital-signature.pem',
        'key-pkcs8-rsa.pem',
        'svid_leaf_key_usage',
        "x509svid: certificate validation failed: leaf certificate must have 'digitalSignature' set as key usage",
      ],
      ['wrong-leaf-cert-sign.pem', 'key-pkcs8-rsa.pem', 'svid_leaf_key_usage', "x509svid: certificate validation failed: leaf certificate must not have 'keyCertSign' set as key usage"],
      ['wrong-leaf-crl-sign.pem', 'key-pkcs8-rsa.pem', 'svid_leaf_key_usage', "x509svid: certificate validation failed: leaf certificate must not have 'cRLSign' set as key usage"],
      [
        'wrong-intermediate-no-ca.pem',
        'key-pkcs8-rsa.pem',
        'svid_intermediate_not_ca',
        /^x509svid: certificate validation failed: signing certificate must have CA flag set to true/,
      ],
      [
        'wrong-intermediate-no-key-cert-sign.pem',
        'key-pkcs8-rsa.pem',
        'svid_intermediate_key_usage',
        /^x509svid: certificate validation failed: signing certificate must have 'keyCertSign' set as key usage/,
      ],
    ];
    for (const [certFile, keyFile, reason, message] of rejected) {
      t.throws(() => parseX509Svid(read(certFile), read(keyFile)), { name: 'X509SvidError', reason, message }, `${certFile} + ${keyFile}`);
    }
  });

  t.test('fixture flags as PROVENANCE.md describes them (basic key usage, not Node’s EKU)', async (t) => {
    const leaf = new X509Certificate(read('good-leaf-only.pem'));
    const f = certificateFacts(leaf);
    t.equal(f.keyUsage, KeyUsageBit.digitalSignature);
    t.equal(f.isCa, false);
    t.same(f.uriSans, [WORKLOAD]);
    const [, mid] = decodePemBlocks(read('good-leaf-and-intermediate.pem'));
    const mf = certificateFacts(new X509Certificate(mid!.bytes));
    t.equal(mf.isCa, true);
    // openssl -text: "Digital Signature, Certificate Sign, CRL Sign"
    t.equal(mf.keyUsage, KeyUsageBit.digitalSignature | KeyUsageBit.keyCertSign | KeyUsageBit.cRLSign);
    t.same(mf.uriSans, ['spiffe://example.org']);
    t.equal(spkiSha256(leaf).length, 32);
  });

  t.test('ParseRaw (DER) with the fixtures', async (t) => {
    const certDer = Buffer.concat(decodePemBlocks(read('good-leaf-and-intermediate.pem')).map((b) => b.bytes));
    const keyDer = decodePemBlocks(read('key-pkcs8-ecdsa.pem'))[0]!.bytes;
    const svid = parseX509SvidRaw(certDer, keyDer, 'h');
    t.equal(svid.id.toString(), WORKLOAD);
    t.equal(svid.certificates.length, 2);
    t.equal(svid.hint, 'h');
    t.throws(() => parseX509SvidRaw(Buffer.from('not DER'), keyDer), {
      reason: 'svid_cert_parse_failed',
      message: /^x509svid: cannot parse DER encoded certificate/,
    });
    t.throws(() => parseX509SvidRaw(certDer, Buffer.from('not DER')), {
      reason: 'svid_key_parse_failed',
      message: /^x509svid: cannot parse DER encoded private key/,
    });
    t.throws(() => parseX509SvidRaw(Buffer.concat([certDer, Buffer.from([0x30])]), keyDer), { name: 'X509SvidError', reason: 'svid_cert_parse_failed' }, 'truncated trailing element');
    t.throws(() => parseX509SvidRaw(certDer.subarray(0, certDer.length - 1), keyDer), { name: 'X509SvidError', reason: 'svid_cert_parse_failed' }, 'truncated chain');
    t.throws(() => parseX509SvidRaw(Buffer.alloc(0), keyDer), { name: 'X509SvidError', reason: 'svid_no_certificates' });
    const rsaKeyDer = decodePemBlocks(read('key-pkcs8-rsa.pem'))[0]!.bytes;
    t.throws(() => parseX509SvidRaw(certDer, rsaKeyDer), { name: 'X509SvidError', reason: 'svid_key_mismatch' });
  });
});

t.test('generated SVIDs', async (t) => {
  const ca = await makeCa({ td: 'example.org' });
  const mid = await makeIntermediate(ca);

  t.test('root-path SPIFFE ID is rejected', async (t) => {
    const leaf = await makeLeaf(mid, { uris: ['spiffe://example.org'] });
    t.throws(() => parseX509Svid(leaf.pem, leaf.keyPem), {
      reason: 'svid_root_path_id',
      message: /^x509svid: certificate validation failed: leaf certificate SPIFFE ID must have a non-root path/,
    });
  });

  t.test('URI SAN problems', async (t) => {
    const two = await makeLeaf(mid, { uris: ['spiffe://example.org/a', 'spiffe://example.org/b'] });
    t.throws(() => parseX509Svid(two.pem, two.keyPem), { name: 'X509SvidError', reason: 'svid_multiple_uri_san', message: /more than one URI SAN/ });
    const bad = await makeLeaf(mid, { uris: ['https://example.org/a'] });
    t.throws(() => parseX509Svid(bad.pem, bad.keyPem), { name: 'X509SvidError', reason: 'svid_invalid_spiffe_id', message: /scheme is missing or invalid/ });
  });

  t.test('every supported key type, DER and PEM', async (t) => {
    for (const alg of ['P-256', 'P-384', 'RSA', 'Ed25519'] as const) {
      const leaf = await makeLeaf(mid, { uris: ['spiffe://example.org/w'], alg });
      const pem = leaf.pem + mid.pem;
      const svid = parseX509Svid(pem, leaf.keyPem);
      t.equal(svid.id.toString(), 'spiffe://example.org/w', alg);
      t.equal(svid.certificates.length, 2);
      const raw = parseX509SvidRaw(Buffer.concat([leaf.der, mid.der]), leaf.privateKey.export({ type: 'pkcs8', format: 'der' }));
      t.same(raw.certificates.map((c) => c.fingerprint256), svid.certificates.map((c) => c.fingerprint256), `${alg}: DER == PEM`);
    }
  });

  t.test('serial number 0 (issued by the openssl CLI) is accepted', async (t) => {
    const leaf = opensslIssueLeaf(mid, { uri: 'spiffe://example.org/zero', serial: '0' });
    t.equal(leaf.cert.serialNumber, '0', 'really serial 0');
    const svid = parseX509Svid(leaf.pem + mid.pem, leaf.keyPem);
    t.equal(svid.id.toString(), 'spiffe://example.org/zero');
    t.equal(svid.certificates.length, 2);
  });

  t.test('SEC1 / PKCS#1 PEM keys', async (t) => {
    const ec = await makeLeaf(mid, { uris: ['spiffe://example.org/ec'] });
    const sec1 = ec.privateKey.export({ type: 'sec1', format: 'pem' }) as string;
    t.match(sec1, /BEGIN EC PRIVATE KEY/);
    t.equal(parseX509Svid(ec.pem, sec1).id.toString(), 'spiffe://example.org/ec');
    const rsa = await makeLeaf(mid, { uris: ['spiffe://example.org/rsa'], alg: 'RSA' });
    const pkcs1 = rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }) as string;
    t.match(pkcs1, /BEGIN RSA PRIVATE KEY/);
    t.equal(parseX509Svid(rsa.pem, pkcs1).id.toString(), 'spiffe://example.org/rsa');
  });

  t.test('unsupported key type (P-521) and encrypted keys are refused', async (t) => {
    const { generateKeyPairSync } = await import('node:crypto');
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'secp521r1' });
    const leaf = await makeLeaf(mid, { uris: ['spiffe://example.org/w'] });
    t.throws(() => parseX509Svid(leaf.pem, privateKey.export({ type: 'pkcs8', format: 'pem' })), { name: 'X509SvidError', reason: 'svid_unsupported_key' });
    const encrypted = createPrivateKey(leaf.keyPem).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'x' }) as string;
    t.throws(() => parseX509Svid(leaf.pem, encrypted), { name: 'X509SvidError', reason: 'svid_key_parse_failed', message: /encrypted PEM private keys are not supported/ });
  });

  t.test('malformed PEM input never crashes, always a typed error', async (t) => {
    const leaf = await makeLeaf(mid, { uris: ['spiffe://example.org/w'] });
    const inputs = [
      '-----BEGIN CERTIFICATE-----\nAAAA',
      '-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n',
      leaf.pem.replace('-----END CERTIFICATE-----', ''),
      '\u0000\u00ff'.repeat(100),
    ];
    for (const input of inputs) {
      t.throws(() => parseX509Svid(input, leaf.keyPem), { name: 'X509SvidError', reason: 'svid_cert_parse_failed' });
    }
  });
});
