// go-spiffe x509bundle / jwtbundle / spiffebundle fixtures with PROVENANCE.md's outcomes,
// marshal round-trips and BundleSet behaviour.
import t from 'tap';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { readConformance, spiffeConformance } from '../helpers/spiffe-conformance.js';
import { makeCa } from '../helpers/certs.js';
import { parseTrustDomain } from '../../src/spiffe/id.js';
import { X509Bundle } from '../../src/spiffe/bundle/x509-bundle.js';
import { JwtBundle } from '../../src/spiffe/bundle/jwt-bundle.js';
import { SpiffeBundle } from '../../src/spiffe/bundle/spiffe-bundle.js';
import { BundleSet } from '../../src/spiffe/bundle/bundle-set.js';
import { parseCertificatesPem } from '../../src/spiffe/x509.js';

const domainTest = parseTrustDomain('domain.test');
const exampleOrg = parseTrustDomain('example.org');
const KID1 = 'C6vs25welZOx6WksNYfbMfiw9l96pMnD';
const KID2 = 'gHTCunJbefYtnZnTctd84xeRWyMrEsWD';

t.test('go-spiffe bundle fixtures', async (t) => {
  const dir = spiffeConformance(t);
  if (!dir) return;
  const read = (rel: string) => readConformance(dir, rel);

  t.test('x509bundle', async (t) => {
    const certs = X509Bundle.fromPem(domainTest, read('x509bundle/certs.pem'));
    t.equal(certs.authorities.length, 2);
    t.match(certs.authorities[0]!.subject, /CN=PEMUTILTEST1/);
    t.match(certs.authorities[1]!.subject, /CN=PEMUTILTEST2/);
    t.ok(certs.trustDomain.equals(domainTest));

    const cert = X509Bundle.fromPem(domainTest, read('x509bundle/cert.pem'));
    t.equal(cert.authorities.length, 1);
    t.ok(cert.authorities[0]!.raw.equals(certs.authorities[0]!.raw), 'same cert as the first of certs.pem');

    const empty = X509Bundle.fromPem(domainTest, read('x509bundle/empty.pem'));
    t.equal(empty.authorities.length, 0, 'empty file = empty bundle');
    t.equal(empty.toPem(), '');

    t.throws(() => X509Bundle.fromPem(domainTest, read('x509bundle/not-pem.pem')), {
      name: 'BundleError',
      reason: 'x509_bundle_invalid',
      message: /x509bundle: cannot parse certificate: no PEM blocks found/,
    });
    t.throws(() => X509Bundle.fromPem(domainTest, read('x509bundle/corrupted.pem')), {
      name: 'BundleError',
      reason: 'x509_bundle_invalid',
      message: /x509bundle: cannot parse certificate/,
    });

    // PEM and DER forms round-trip
    t.ok(X509Bundle.fromPem(domainTest, certs.toPem()).equals(certs));
    t.ok(X509Bundle.fromDer(domainTest, certs.toDer()).equals(certs));
    t.equal(X509Bundle.fromDer(domainTest, Buffer.alloc(0)).authorities.length, 0);
    t.throws(() => X509Bundle.fromDer(domainTest, certs.toDer().subarray(1)), { name: 'BundleError', reason: 'x509_bundle_invalid' });
    t.notOk(certs.equals(cert));
    t.notOk(certs.equals(X509Bundle.fromPem(exampleOrg, read('x509bundle/certs.pem'))), 'different trust domain');
    t.equal(new X509Bundle(domainTest, [...certs.authorities, ...certs.authorities]).authorities.length, 2, 'deduplicated');
    t.equal(certs.getX509Bundle(domainTest), certs);
    t.equal(certs.getX509Bundle(exampleOrg), undefined);
  });

  t.test('jwtbundle', async (t) => {
    const one = JwtBundle.fromJwks(exampleOrg, read('jwtbundle/jwks_valid_1.json'));
    t.same([...one.authorities.keys()], [KID1]);
    const key = one.authorities.get(KID1)!;
    t.equal(key.asymmetricKeyType, 'ec');
    t.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    t.equal(key.type, 'public');

    const two = JwtBundle.fromJwks(exampleOrg, read('jwtbundle/jwks_valid_2.json'));
    t.same([...two.authorities.keys()], [KID1, KID2]);

    t.throws(() => JwtBundle.fromJwks(exampleOrg, read('jwtbundle/jwks_missing_kid.json')), {
      name: 'BundleError',
      reason: 'jwt_bundle_invalid',
      message: 'jwtbundle: error adding authority 1 of JWKS: keyID cannot be empty',
    });

    const again = JwtBundle.fromJwks(exampleOrg, two.toJwks());
    t.ok(again.equals(two), 'toJwks round-trip');
    t.notOk(again.equals(one));
  });

  t.test('spiffebundle accepted', async (t) => {
    const v1 = SpiffeBundle.parse(domainTest, read('spiffebundle/spiffebundle_valid_1.json'));
    t.same([...v1.jwtAuthorities.keys()], [KID1]);
    t.equal(v1.x509Authorities.length, 1);
    t.equal(v1.x509Authorities[0]!.publicKey.asymmetricKeyDetails?.namedCurve, 'secp384r1', 'x509-svid key is EC P-384');
    t.equal(v1.refreshHintSeconds, undefined);
    t.equal(v1.sequenceNumber, undefined);

    const v2 = SpiffeBundle.parse(domainTest, read('spiffebundle/spiffebundle_valid_2.json'));
    t.equal(v2.jwtAuthorities.size, 6);
    t.equal(v2.x509Authorities.length, 1);
    t.equal(v2.refreshHintSeconds, 60);
    t.equal(v2.sequenceNumber, 1);
    t.equal(v2.witAuthorities.size, 0);

    const wit = SpiffeBundle.parse(domainTest, read('spiffebundle/spiffebundle_valid_with_wit.json'));
    t.same([...wit.jwtAuthorities.keys()].sort(), ['IRsID4VIM3T11TsK43Ny1DgCD5UNWhva', 'qjwWkiMpkHzIxsSrAsLxSZ2WZ8AyMESx']);
    t.same([...wit.witAuthorities.keys()].sort(), ['uNhqAaPI7NDn7IHOsa2ac1BF4O5qGxjZ', 'y3UHKFp0WqPpG7gVr3FKieiEzwH8fTMm']);
    t.equal(wit.x509Authorities.length, 1);
    t.equal(wit.refreshHintSeconds, 60);
    t.equal(wit.sequenceNumber, 1);

    // sub-bundles
    t.ok(v2.x509Bundle().equals(new X509Bundle(domainTest, v2.x509Authorities)));
    t.equal(v2.jwtBundle().authorities.size, 6);
    t.ok(v2.jwtBundle().trustDomain.equals(domainTest));
  });

  t.test('spiffebundle rejected', async (t) => {
    const cases: [string, string][] = [
      ['spiffebundle_missing_kid.json', 'spiffebundle: error adding authority 1 of JWKS: keyID cannot be empty'],
      ['spiffebundle_no_keys.json', 'spiffebundle: no authorities found'],
      ['spiffebundle_multiple_x509.json', 'spiffebundle: expected a single certificate in x509-svid entry 0; got 2'],
    ];
    for (const [file, message] of cases) {
      t.throws(() => SpiffeBundle.parse(domainTest, read(`spiffebundle/${file}`)), { name: 'BundleError', reason: 'spiffe_bundle_invalid', message }, file);
    }
  });

  t.test('marshal round-trip (go-spiffe TestMarshal) incl. WIT keys', async (t) => {
    for (const file of ['spiffebundle_valid_1.json', 'spiffebundle_valid_2.json', 'spiffebundle_valid_with_wit.json']) {
      const b = SpiffeBundle.parse(domainTest, read(`spiffebundle/${file}`));
      const again = SpiffeBundle.parse(domainTest, b.marshal());
      t.ok(again.equals(b), `${file}: parse(marshal()) equals`);
      t.equal(again.marshal(), b.marshal(), `${file}: marshal is deterministic`);
    }
    const v2 = SpiffeBundle.parse(domainTest, read('spiffebundle/spiffebundle_valid_2.json'));
    const doc = JSON.parse(v2.marshal());
    t.equal(doc.spiffe_refresh_hint, 60);
    t.equal(doc.spiffe_sequence, 1);
    t.equal(doc.keys.filter((k: { use: string }) => k.use === 'x509-svid').length, 1);
    t.equal(doc.keys.filter((k: { use: string }) => k.use === 'jwt-svid').length, 6);
    t.notOk(
      v2.equals(SpiffeBundle.parse(domainTest, JSON.stringify({ ...doc, spiffe_sequence: 2 }))),
      'a different sequence number is a different bundle',
    );
  });
});

t.test('spiffe bundle: hostile / malformed documents are typed errors', async (t) => {
  const ca = await makeCa({ td: 'domain.test' });
  const x5cEntry = { use: 'x509-svid', ...ca.cert.publicKey.export({ format: 'jwk' }), x5c: [ca.der.toString('base64')] };
  const ok = SpiffeBundle.parse(domainTest, JSON.stringify({ keys: [x5cEntry], spiffe_sequence: 7, spiffe_refresh_hint: 300 }));
  t.equal(ok.x509Authorities.length, 1);
  t.equal(ok.sequenceNumber, 7);
  t.equal(ok.refreshHintSeconds, 300);
  t.equal(SpiffeBundle.parse(domainTest, '{"keys":[]}').x509Authorities.length, 0, 'empty key list is allowed');
  t.equal(SpiffeBundle.parse(domainTest, '{"keys":[{"use":"other","kty":"EC"}]}').jwtAuthorities.size, 0, 'unknown use ignored');

  const other = await makeCa({ td: 'domain.test' });
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const bad: [string, string, RegExp][] = [
    ['not JSON', '{', /unable to parse JWKS/],
    ['array', '[]', /not a JSON object/],
    ['keys not array', '{"keys":{}}', /"keys" must be an array/],
    ['negative sequence', '{"keys":[],"spiffe_sequence":-1}', /spiffe_sequence/],
    ['fractional hint', '{"keys":[],"spiffe_refresh_hint":1.5}', /spiffe_refresh_hint/],
    ['string hint', '{"keys":[],"spiffe_refresh_hint":"60"}', /spiffe_refresh_hint/],
    ['x5c not base64', JSON.stringify({ keys: [{ ...x5cEntry, x5c: ['***'] }] }), /not base64/],
    ['x5c garbage DER', JSON.stringify({ keys: [{ ...x5cEntry, x5c: ['AAAA'] }] }), /x509-svid entry 0/],
    ['x5c missing', JSON.stringify({ keys: [{ ...x5cEntry, x5c: undefined }] }), /expected a single certificate in x509-svid entry 0; got 0/],
    [
      'JWK key does not match x5c',
      JSON.stringify({ keys: [{ ...x5cEntry, x5c: [other.der.toString('base64')] }] }),
      /does not match its x5c certificate/,
    ],
    [
      'private key in a JWT authority',
      JSON.stringify({ keys: [{ use: 'jwt-svid', kid: 'k', ...privateKey.export({ format: 'jwk' }) }] }),
      /private key material/,
    ],
    ['symmetric key', JSON.stringify({ keys: [{ use: 'jwt-svid', kid: 'k', kty: 'oct', k: 'AAAA' }] }), /unsupported key type "oct"/],
    ['bad EC point', JSON.stringify({ keys: [{ use: 'jwt-svid', kid: 'k', kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA' }] }), /invalid EC key/],
    [
      'duplicate kid',
      JSON.stringify({
        keys: [
          { use: 'jwt-svid', kid: 'k', ...ca.cert.publicKey.export({ format: 'jwk' }) },
          { use: 'jwt-svid', kid: 'k', ...ca.cert.publicKey.export({ format: 'jwk' }) },
        ],
      }),
      /duplicate keyID "k"/,
    ],
    ['kid not a string', JSON.stringify({ keys: [{ use: 'wit-svid', kid: 5, ...ca.cert.publicKey.export({ format: 'jwk' }) }] }), /keyID must be a string/],
    ['key entry not an object', '{"keys":[null]}', /key 0 is not a JSON object/],
    ['duplicate member', '{"keys":[],"keys":[{"kty":"EC"}]}', /duplicate member "keys"/],
    ['kty from Object.prototype', '{"keys":[{"use":"jwt-svid","kid":"k","kty":"constructor"}]}', /unsupported key type "constructor"/],
  ];
  for (const [name, json, message] of bad) {
    t.throws(() => SpiffeBundle.parse(domainTest, json), { name: 'BundleError', reason: 'spiffe_bundle_invalid', message }, name);
  }
  t.throws(() => JwtBundle.fromJwks(domainTest, '{"keys":[{"kid":"a","kty":"RSA","n":"","e":"AQAB"}]}'), {
    name: 'BundleError',
    reason: 'jwt_bundle_invalid',
    message: /error adding authority 0 of JWKS: missing or invalid "n"/,
  });
  t.throws(() => JwtBundle.fromJwks(domainTest, new Uint8Array([0xff, 0xfe])), { name: 'BundleError', reason: 'jwt_bundle_invalid' });
});

t.test('BundleSet', async (t) => {
  const [a1, a2, b1] = await Promise.all([makeCa({ td: 'a.test' }), makeCa({ td: 'a.test' }), makeCa({ td: 'b.test' })]);
  const tdA = parseTrustDomain('a.test');
  const tdB = parseTrustDomain('b.test');
  const bundleA = new X509Bundle(tdA, [a1.cert, a2.cert]);
  const bundleB = new X509Bundle(tdB, [b1.cert]);
  const set = new BundleSet([bundleB, bundleA]);

  t.equal(set.getX509Bundle(tdA), bundleA);
  t.equal(set.getX509Bundle(parseTrustDomain('spiffe://b.test/x')), bundleB);
  t.equal(set.getX509Bundle(parseTrustDomain('c.test')), undefined);
  t.same(set.trustDomains().map(String), ['a.test', 'b.test'], 'sorted');
  t.same(set.bundles().map((b) => b.trustDomain.name), ['a.test', 'b.test']);

  const pemCerts = parseCertificatesPem(set.allAuthoritiesPem());
  t.same(pemCerts.map((c: X509Certificate) => c.fingerprint256).sort(), [a1, a2, b1].map((c) => c.cert.fingerprint256).sort(), 'every authority of every domain');

  t.ok(set.equals(new BundleSet([bundleA, bundleB])));
  t.notOk(set.equals(new BundleSet([bundleA])));
  t.notOk(set.equals(new BundleSet([new X509Bundle(tdA, [a1.cert]), bundleB])));
  t.ok(new BundleSet([bundleA, new X509Bundle(tdA, [a1.cert, a2.cert])]).equals(new BundleSet([bundleA])), 'an equal repeat is fine');
  t.throws(() => new BundleSet([bundleA, new X509Bundle(tdA, [a1.cert])]), {
    name: 'BundleError',
    reason: 'bundle_set_conflict',
    message: 'two different X.509 bundles for trust domain "a.test"',
  });
  t.equal(new BundleSet([]).allAuthoritiesPem(), '');
});
