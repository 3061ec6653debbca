/**
 * SVID leaf extensions as policy claims: OID -> { text?, hex }, cross-checked against the
 * real `openssl asn1parse`.
 */
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import t from 'tap';
import { derStringText, svidExtensionClaims } from '../../src/spiffe/extensions.js';
import { X509ParseError } from '../../src/spiffe/x509.js';
import { customExtension, makeCa, makeIntermediate, makeLeaf } from '../helpers/certs.js';

const der = (...bytes: number[]) => new Uint8Array(bytes);
const tlv = (tag: number, content: Uint8Array | string) => {
  const c = typeof content === 'string' ? Buffer.from(content, 'utf8') : Buffer.from(content);
  const len = c.length < 0x80 ? [c.length] : c.length < 0x100 ? [0x81, c.length] : [0x82, c.length >> 8, c.length & 0xff];
  return new Uint8Array([tag, ...len, ...c]);
};

const root = await makeCa({ td: 'bank.example' });
const mid = await makeIntermediate(root, { td: 'bank.example' });

t.test('derStringText: the three string types, strictly', async (t) => {
  t.equal(derStringText(tlv(0x0c, 'payments team')), 'payments team', 'UTF8String');
  t.equal(derStringText(tlv(0x0c, 'Zürich ✓')), 'Zürich ✓', 'UTF8String, multi-byte');
  t.equal(derStringText(tlv(0x0c, '\ufeffbom')), '\ufeffbom', 'a BOM is kept, not stripped');
  t.equal(derStringText(tlv(0x16, 'ops@bank.example')), 'ops@bank.example', 'IA5String');
  t.equal(derStringText(tlv(0x13, "Payments (EU) - 1/2 'x'?")), "Payments (EU) - 1/2 'x'?", 'PrintableString');
  t.equal(derStringText(tlv(0x0c, '')), '', 'empty string');
  const long = 'x'.repeat(300);
  t.equal(derStringText(tlv(0x0c, long)), long, 'long-form length');

  t.equal(derStringText(tlv(0x13, 'ops@bank')), undefined, "'@' is not printable-string");
  t.equal(derStringText(tlv(0x16, der(0x61, 0xe9))), undefined, 'IA5String is 7-bit');
  t.equal(derStringText(tlv(0x0c, der(0xc3, 0x28))), undefined, 'invalid UTF-8');
  t.equal(derStringText(der(0x0c, 0x02, 0x61)), undefined, 'truncated');
  t.equal(derStringText(der(0x0c, 0x01, 0x61, 0x62)), undefined, 'trailing bytes');
  t.equal(derStringText(der(0x0c, 0x81, 0x01, 0x61)), undefined, 'non-minimal length');
  t.equal(derStringText(der(0x0c, 0x80, 0x61, 0x00, 0x00)), undefined, 'indefinite length');
  t.equal(derStringText(der(0x04, 0x01, 0x61)), undefined, 'OCTET STRING is not text');
  t.equal(derStringText(der(0x1e, 0x02, 0x00, 0x61)), undefined, 'BMPString is not decoded');
  t.equal(derStringText(der()), undefined);
  t.equal(derStringText(der(0x0c)), undefined);
});

t.test('every extension of a leaf, by OID, matching openssl asn1parse', async (t) => {
  const leaf = await makeLeaf(mid, {
    uris: ['spiffe://bank.example/ledger'],
    extensions: [
      customExtension('1.3.6.1.4.1.99999.1', false, tlv(0x0c, 'payments')),
      customExtension('1.3.6.1.4.1.99999.2', false, tlv(0x16, 'ops@bank.example')),
      customExtension('1.3.6.1.4.1.99999.3', false, tlv(0x13, 'EU 1')),
      customExtension('1.3.6.1.4.1.99999.4', false, der(0x02, 0x01, 0xff)),
      customExtension('2.999.7', false, tlv(0x0c, der(0xff))),
    ],
  });
  const claims = svidExtensionClaims(leaf.cert);
  t.strictSame(claims.get('1.3.6.1.4.1.99999.1'), { text: 'payments', hex: '0c087061796d656e7473' });
  t.strictSame(claims.get('1.3.6.1.4.1.99999.2'), { text: 'ops@bank.example', hex: Buffer.from(tlv(0x16, 'ops@bank.example')).toString('hex') });
  t.strictSame(claims.get('1.3.6.1.4.1.99999.3'), { text: 'EU 1', hex: '130445552031' });
  t.strictSame(claims.get('1.3.6.1.4.1.99999.4'), { hex: '0201ff' });
  t.strictSame(claims.get('2.999.7'), { hex: '0c01ff' }, 'a UTF8String that is not UTF-8 is hex only');
  t.strictSame(claims.get('2.5.29.15'), { hex: '03020780' }, 'keyUsage digitalSignature');
  t.ok(claims.has('2.5.29.17') && claims.has('2.5.29.14') && claims.has('2.5.29.35') && claims.has('2.5.29.19'));
  t.ok(Object.isFrozen(claims.get('2.5.29.15')));

  // Independent reading: OBJECT / [BOOLEAN] / OCTET STRING triples of the extensions list.
  const r = spawnSync('openssl', ['asn1parse', '-inform', 'DER'], { input: leaf.der, encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split('\n');
  const fromOpenssl: { oid: string; hex: string }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const obj = /d=5 .*prim: OBJECT\s+:(.*)$/.exec(lines[i]!);
    if (!obj) continue;
    let j = i + 1;
    if (/prim: BOOLEAN/.test(lines[j]!)) j++;
    const oct = /prim: OCTET STRING\s+\[HEX DUMP\]:([0-9A-F]+)$/.exec(lines[j]!);
    if (oct) fromOpenssl.push({ oid: obj[1]!.trim(), hex: oct[1]!.toLowerCase() });
  }
  t.equal(fromOpenssl.length, claims.size, 'same number of extensions');
  t.strictSame(fromOpenssl.map((e) => e.hex), [...claims.values()].map((c) => c.hex), 'same extnValue bytes, in order');
  const numeric = fromOpenssl.filter((e) => /^[0-9.]+$/.test(e.oid)).map((e) => e.oid);
  t.strictSame(numeric, ['1.3.6.1.4.1.99999.1', '1.3.6.1.4.1.99999.2', '1.3.6.1.4.1.99999.3', '1.3.6.1.4.1.99999.4', '2.999.7']);
  t.strictSame([...claims.keys()].slice(-5), numeric);
});

t.test('cached per certificate, also across objects for the same DER', async (t) => {
  const leaf = await makeLeaf(mid, { uris: ['spiffe://bank.example/a'] });
  const a = svidExtensionClaims(leaf.cert);
  t.equal(svidExtensionClaims(leaf.cert), a);
  t.equal(svidExtensionClaims(new X509Certificate(leaf.der)), a, 'a fresh object (as TLS hands out) hits the cache');
  const other = await makeLeaf(mid, { uris: ['spiffe://bank.example/a'] });
  t.not(svidExtensionClaims(other.cert), a);
});

t.test('a leaf with a duplicated extension is malformed', async (t) => {
  const leaf = await makeLeaf(mid, {
    uris: ['spiffe://bank.example/a'],
    extensions: [customExtension('1.2.3.4.5', false, der(0x05, 0x00)), customExtension('1.2.3.4.5', false, der(0x05, 0x00))],
  });
  t.throws(() => svidExtensionClaims(leaf.cert), X509ParseError);
  t.throws(() => svidExtensionClaims(leaf.cert), { reason: 'x509_malformed', message: /duplicate extension 1\.2\.3\.4\.5/ });
});
