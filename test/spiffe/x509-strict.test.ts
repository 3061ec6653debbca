// Certificates whose key usage, SKI/AKI, SAN or validity bytes are malformed: each is refused
// by the X509-SVID checks, and (where it says so) by OpenSSL too.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { X509Certificate } from 'node:crypto';
import { skipFor, toolsMissing } from '../helpers/needs.js';
import { customExtension, derTlv, KU, makeCa, makeLeaf, resignEdited, TestCert } from '../helpers/certs.js';
import { parseX509Svid } from '../../src/spiffe/svid.js';
import { verifyX509Svid } from '../../src/spiffe/verify.js';
import { X509Bundle } from '../../src/spiffe/bundle/x509-bundle.js';
import { parseTrustDomain } from '../../src/spiffe/id.js';
import { certificateFacts, KeyUsageBit, parseCertificateDer, parsePrivateKeyPem } from '../../src/spiffe/x509.js';
import { keyUsageBits } from '../../src/spiffe/x509-strict.js';
import { jwkToPublicKey } from '../../src/spiffe/bundle/jwk.js';
import { fromStructMessage, toStructMessage } from '../../src/spiffe/workload-api/proto.js';

const URI = 'spiffe://example.org/w';
const KEY_USAGE = '2.5.29.15';
const SKI = '2.5.29.14';
const AKI = '2.5.29.35';
const SAN = '2.5.29.17';

const opensslMissing = skipFor(toolsMissing(['openssl'], 'openssl'));

/** `openssl verify` of `leaf` against `root`: [exit status, output]. */
function opensslVerify(root: TestCert, leaf: X509Certificate): [number | null, string] {
  const dir = mkdtempSync(join(tmpdir(), 'x509-strict-'));
  try {
    writeFileSync(join(dir, 'root.pem'), root.pem);
    writeFileSync(join(dir, 'leaf.pem'), leaf.toString());
    const r = spawnSync('openssl', ['verify', '-x509_strict', '-CAfile', 'root.pem', 'leaf.pem'], { cwd: dir, encoding: 'utf8' });
    return [r.status, `${r.stdout}${r.stderr}`];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** keyUsage extension value: BIT STRING with `unused` padding bits over `content`. */
const keyUsageValue = (unused: number, content: number[]) => derTlv(0x03, Buffer.from([unused, ...content]));

t.test('key usage is read bit by bit', async (t) => {
  t.equal(keyUsageBits(keyUsageValue(7, [0x80])), KeyUsageBit.digitalSignature);
  t.equal(keyUsageBits(keyUsageValue(2, [0x84])), KeyUsageBit.digitalSignature | KeyUsageBit.keyCertSign);
  t.equal(keyUsageBits(keyUsageValue(7, [0x00, 0x80])), KeyUsageBit.decipherOnly);
  t.equal(keyUsageBits(keyUsageValue(0, [0x86, 0x00])), KeyUsageBit.digitalSignature | KeyUsageBit.keyCertSign | KeyUsageBit.cRLSign);
  const refused: [string, Buffer, RegExp][] = [
    ['9 bytes with keyCertSign', keyUsageValue(0, [0x84, 0, 0, 0, 0, 0, 0, 0, 0]), /BIT STRING of 9 bytes/],
    ['3 bytes', keyUsageValue(0, [0x80, 0, 0]), /BIT STRING of 3 bytes/],
    ['a bit past decipherOnly', keyUsageValue(6, [0x80, 0x40]), /undefined bit 9 is set/],
    ['8 unused bits', keyUsageValue(8, [0x80]), /8 unused bits/],
    ['set padding bits', keyUsageValue(7, [0x81]), /padding bits are set/],
    ['no content byte at all', derTlv(0x03, Buffer.alloc(0)), /empty BIT STRING/],
    ['trailing data', Buffer.concat([keyUsageValue(7, [0x80]), Buffer.from([0])]), /trailing data/],
    ['not a BIT STRING', derTlv(0x04, Buffer.from([7, 0x80])), /expected tag 0x3/],
  ];
  for (const [what, value, message] of refused) t.throws(() => keyUsageBits(value), { message }, what);
});

t.test('malformed leaves are refused by the SVID checks (and by OpenSSL)', async (t) => {
  const root = await makeCa({ td: 'example.org' });
  const bundle = new X509Bundle(parseTrustDomain('example.org'), [root.cert]);
  // opensslOutput null: OpenSSL 3.0 `verify -x509_strict` accepts it (we are stricter; see docs/parsers.md).
  const refusedByBoth = async (what: string, leaf: X509Certificate, message: RegExp, opensslOutput: RegExp | null, key?: TestCert) => {
    t.throws(() => parseCertificateDer(leaf.raw), { reason: 'x509_malformed', message }, `${what}: parse`);
    t.throws(() => verifyX509Svid([leaf], bundle, new Date()), { reason: 'svid_malformed', message }, `${what}: verify`);
    if (key) t.throws(() => parseX509Svid(leaf.toString(), key.keyPem), { reason: 'svid_cert_parse_failed', message }, `${what}: own SVID`);
    if (opensslOutput === null) return;
    await t.test(`${what}: OpenSSL refuses it too`, { skip: opensslMissing }, async (t) => {
      const [status, output] = opensslVerify(root, leaf);
      t.not(status, 0, 'openssl verify fails');
      t.match(output, opensslOutput, "openssl's reason");
    });
  };

  const good = await makeLeaf(root, { uris: [URI] });
  t.ok(verifyX509Svid([good.cert], bundle, new Date()), 'the unedited leaf verifies');
  if (!opensslMissing) t.equal(opensslVerify(root, good.cert)[0], 0, 'and OpenSSL accepts it');

  // The overflow: a 9-byte keyUsage with digitalSignature|keyCertSign used to read as having neither.
  const longKu = await makeLeaf(root, { uris: [URI], extensions: [customExtension(KEY_USAGE, true, keyUsageValue(0, [0x84, 0, 0, 0, 0, 0, 0, 0, 0]))] });
  await refusedByBoth('9-byte keyUsage with keyCertSign', longKu.cert, /keyUsage: BIT STRING of 9 bytes/, /keyCertSign invalid for non-CA/, longKu);
  const highBits = await makeLeaf(root, { uris: [URI], extensions: [customExtension(KEY_USAGE, true, keyUsageValue(0, [0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))] });
  t.throws(() => parseCertificateDer(highBits.cert.raw), { message: /keyUsage: BIT STRING of 9 bytes/ }, 'bits past decipherOnly set');

  const emptySki = await makeLeaf(root, { uris: [URI], extensions: [customExtension(SKI, false, derTlv(0x04, Buffer.alloc(0)))] });
  await refusedByBoth('empty SKI', emptySki.cert, /subjectKeyIdentifier: empty/, null, emptySki);
  const emptyAki = await makeLeaf(root, { uris: [URI], extensions: [customExtension(AKI, false, derTlv(0x30, Buffer.alloc(0)))] });
  await refusedByBoth('empty AKI', emptyAki.cert, /authorityKeyIdentifier: empty/, /Missing Authority Key Identifier/);
  const emptyAkiKeyId = await makeLeaf(root, { uris: [URI], extensions: [customExtension(AKI, false, derTlv(0x30, derTlv(0x80, Buffer.alloc(0))))] });
  await refusedByBoth('empty AKI keyIdentifier', emptyAkiKeyId.cert, /authorityKeyIdentifier: empty keyIdentifier/, /unable to get local issuer certificate/);

  const uri = Buffer.from(URI);
  const sanTrailing = Buffer.concat([derTlv(0x30, derTlv(0x86, uri)), Buffer.from([0x00])]);
  const badSan = await makeLeaf(root, { uris: [], extensions: [customExtension(SAN, false, sanTrailing)] });
  await refusedByBoth('SAN with trailing bytes', badSan.cert, /trailing data/, null);
  const truncatedSan = await makeLeaf(root, { uris: [], extensions: [customExtension(SAN, false, Buffer.from([0x30, 0x05, 0x86, 0x06, 0x61, 0x62, 0x63]))] });
  await refusedByBoth('SAN with a truncated name', truncatedSan.cert, /subjectAltName entry: truncated/, /invalid|error/i);
  const emptySan = await makeLeaf(root, { uris: [], extensions: [customExtension(SAN, false, derTlv(0x30, Buffer.alloc(0)))] });
  await refusedByBoth('empty SAN', emptySan.cert, /subjectAltName: no names/, /Empty Subject Alternative Name/);
  const binaryUri = await makeLeaf(root, { uris: [], extensions: [customExtension(SAN, false, derTlv(0x30, derTlv(0x86, Buffer.from([0x61, 0xff]))))] });
  await refusedByBoth('SAN URI with a non-IA5 byte', binaryUri.cert, /URI is not an IA5String/, null);

  // Validity times with a field out of range or the wrong form, signed correctly by the root.
  const notBefore = (text: string) => (tbs: Buffer) => {
    const at = tbs.indexOf(Buffer.from([0x17, 0x0d]));
    return Buffer.concat([tbs.subarray(0, at + 2), Buffer.from(text, 'latin1'), tbs.subarray(at + 15)]);
  };
  const validTbsTime = good.cert.validFrom;
  t.ok(validTbsTime, 'the generated leaf has a notBefore');
  const month13 = resignEdited(good, root, notBefore('251301000000Z'));
  await refusedByBoth('notBefore month 13', month13, /notBefore: "251301000000Z" has a field out of range/, /not ?before|format/i);
  const feb30 = resignEdited(good, root, notBefore('250230000000Z'));
  await refusedByBoth('notBefore 30 February', feb30, /notBefore: "250230000000Z" has a field out of range/, /not ?before|format/i);
  const noZ = resignEdited(good, root, notBefore('2501010000000'));
  await refusedByBoth('notBefore without Z', noZ, /notBefore: "2501010000000" is not YYMMDDHHMMSSZ/, /not ?before|format/i);
  const letters = resignEdited(good, root, notBefore('25010100000AZ'));
  t.throws(() => parseCertificateDer(letters.raw), { message: /is not YYMMDDHHMMSSZ/ }, 'a letter in the seconds');

  const leap = resignEdited(good, root, notBefore('240229000000Z'));
  t.equal(certificateFacts(parseCertificateDer(leap.raw)).notBeforeMs, Date.UTC(2024, 1, 29), '29 February of a leap year is a date');
});

t.test('the issuer side: an intermediate with a 9-byte keyUsage is malformed, not a CA without keyCertSign', async (t) => {
  const root = await makeCa({ td: 'example.org' });
  const ku = customExtension(KEY_USAGE, true, keyUsageValue(0, [0x06, 0, 0, 0, 0, 0, 0, 0, 0]));
  const mid = await makeLeaf(root, { ca: true, extensions: [ku] });
  t.throws(() => certificateFacts(mid.cert), { reason: 'x509_malformed', message: /keyUsage: BIT STRING of 9 bytes/ });
  t.equal(KU.keyCertSign, KeyUsageBit.keyCertSign, 'test flags and module flags agree');
});

t.test('PEM labels are matched exactly, never against Object.prototype', async (t) => {
  for (const label of ['constructor', 'toString', '__proto__']) {
    t.equal(parsePrivateKeyPem(`-----BEGIN ${label}-----\nAAAA\n-----END ${label}-----\n`), undefined, `"${label}" is not a key block`);
  }
});

t.test('bundle JWKs and Workload API structs: names are data, never Object.prototype', async (t) => {
  for (const kty of ['constructor', '__proto__', 'toString']) {
    t.throws(() => jwkToPublicKey({ kty, x: 'AA' }), { message: `unsupported key type "${kty}"` }, `kty ${kty}`);
  }
  const fields = JSON.parse('{"__proto__":{"kind":"stringValue","stringValue":"x"},"constructor":{"kind":"numberValue","numberValue":1}}');
  const claims = fromStructMessage({ fields });
  t.ok(Object.hasOwn(claims, '__proto__') && Object.hasOwn(claims, 'constructor'), 'both are own members');
  t.equal(claims['__proto__'], 'x');
  t.equal(claims['constructor'], 1);
  t.same(Object.keys(toStructMessage(claims).fields), ['__proto__', 'constructor'], 'and survive the way back');
});
