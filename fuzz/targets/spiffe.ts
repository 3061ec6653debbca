/**
 * SPIFFE parsers: SPIFFE IDs, X.509-SVID chains (parsed, then verified against a bundle), PEM,
 * SPIFFE and JWT bundle JSON, and Workload API responses after protobuf decoding.
 */
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { DevCa } from '../../src/dev/ca.js';
import { type IssuedSvid } from '../../src/dev/ca-keys.js';
import { X509Bundle } from '../../src/spiffe/bundle/x509-bundle.js';
import { makeCa, makeLeaf } from '../../test/helpers/certs.js';
import { SpiffeBundle } from '../../src/spiffe/bundle/spiffe-bundle.js';
import { JwtBundle } from '../../src/spiffe/bundle/jwt-bundle.js';
import { parseSpiffeId, parseTrustDomain } from '../../src/spiffe/id.js';
import { verifyX509Svid } from '../../src/spiffe/verify.js';
import { parseCertificatesDer, parseCertificatesPem, parsePrivateKeyPem } from '../../src/spiffe/x509.js';
import { parseJwtBundles, parseX509Bundles, parseX509Context } from '../../src/spiffe/workload-api/parse.js';
import { workloadApiService } from '../../src/spiffe/workload-api/proto.js';
import type { FuzzTarget } from '../target.js';
import { once, text, utf8 } from '../seeds.js';

const TD = 'fuzz.example';
const NOW = new Date();
const ca = once(async () => {
  const c = await DevCa.create({ trustDomain: TD });
  const svid = await c.issueX509Svid(`spiffe://${TD}/agent`, { ttlSeconds: 86_400 * 365 });
  return { c, svid };
});

const ID_DICTIONARY = ['spiffe://', '/', '//', '.', '..', '%2e', '%2F', '%', '?', '#', ':', '@', 'A', '-', '_', '\u0000', '\u00e9', ' ', '\n'];
const ID_SEEDS = ['spiffe://example.org/workload', 'spiffe://example.org', 'spiffe://a.b-c_d/p/q/r', 'example.org', 'spiffe://example.org/%41', 'SPIFFE://Example.org/x'];
const PEM_DICTIONARY = ['-----BEGIN CERTIFICATE-----\n', '-----END CERTIFICATE-----\n', '-----BEGIN PRIVATE KEY-----\n', '-----END PRIVATE KEY-----\n', '-----BEGIN EC PRIVATE KEY-----\n', '-----BEGIN RSA PRIVATE KEY-----\n', 'Proc-Type: 4,ENCRYPTED\n', '\r\n', '='];
const JSON_DICTIONARY = ['"keys"', '"kty"', '"EC"', '"RSA"', '"OKP"', '"use"', '"x509-svid"', '"jwt-svid"', '"x5c"', '"kid"', '"crv"', '"P-256"', '"x"', '"y"', '"n"', '"e"', '"spiffe_refresh_hint"', '"spiffe_sequence"', '-1', '1e400', '18446744073709551616', 'null', '"__proto__"', '{', '}', '[', ']', ',', ':', '""'];

export const SPIFFE_TARGETS: FuzzTarget[] = [
  {
    name: 'spiffe-id',
    about: 'SPIFFE IDs (parseSpiffeId)',
    hints: { dictionary: ID_DICTIONARY, maxBytes: 4096 },
    async prepare() {
      return { seeds: ID_SEEDS.map(utf8), run: (b) => parseSpiffeId(text(b)) };
    },
  },
  {
    name: 'trust-domain',
    about: 'trust domain names and trust domain IDs (parseTrustDomain)',
    hints: { dictionary: ID_DICTIONARY, maxBytes: 4096 },
    async prepare() {
      return { seeds: ID_SEEDS.map(utf8), run: (b) => parseTrustDomain(text(b)) };
    },
  },
  {
    name: 'x509-svid-chain',
    about: 'a peer\'s X.509-SVID chain: DER parse, then verification against a bundle',
    hints: { maxBytes: 16384 },
    async prepare() {
      const { c, svid } = await ca();
      const der = Buffer.concat(svid.svid.certificates.map((x) => x.raw));
      const bundle = c.bundle();
      return { seeds: [der], run: (b) => verifyX509Svid(parseCertificatesDer(b), bundle, NOW) };
    },
  },
  {
    name: 'pem-certificates',
    about: 'PEM certificates (identity files, bundles, AK certificates)',
    hints: { maxBytes: 16384, dictionary: PEM_DICTIONARY },
    async prepare() {
      const { svid } = await ca();
      return { seeds: [utf8(svid.certChainPem)], run: (b) => parseCertificatesPem(b) };
    },
  },
  {
    name: 'pem-private-key',
    about: 'PEM private keys (identity files)',
    hints: { maxBytes: 16384, dictionary: PEM_DICTIONARY },
    async prepare() {
      const { svid } = await ca();
      const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'sec1', format: 'pem' }) as string;
      return { seeds: [utf8(svid.keyPem), utf8(ec)], run: (b) => parsePrivateKeyPem(b) };
    },
  },
  {
    name: 'spiffe-bundle',
    about: 'SPIFFE bundle JSON (federated bundles)',
    hints: { dictionary: JSON_DICTIONARY, maxBytes: 32768 },
    async prepare() {
      const { c } = await ca();
      const td = parseTrustDomain(TD);
      const bundle = new SpiffeBundle(td, { x509Authorities: c.bundle().authorities, jwtAuthorities: [...c.jwtBundle().authorities], refreshHintSeconds: 300, sequenceNumber: 2 });
      return { seeds: [utf8(bundle.marshal())], run: (b) => SpiffeBundle.parse(td, b) };
    },
  },
  {
    name: 'jwt-bundle',
    about: 'JWT bundle JWKS',
    hints: { dictionary: JSON_DICTIONARY, maxBytes: 32768 },
    async prepare() {
      const { c } = await ca();
      const td = parseTrustDomain(TD);
      return { seeds: [utf8(c.jwtBundle().toJwks())], run: (b) => JwtBundle.fromJwks(td, b) };
    },
  },
];

/** A Workload API response: protobuf bytes decoded as grpc-js does, then the project's parser. */
function workloadApiTarget(name: string, method: string, parse: (msg: never) => unknown, seed: (c: DevCa, svid: IssuedSvid) => object): FuzzTarget {
  return {
    name,
    about: `${method} responses: protobuf bytes (as grpc-js decodes them), then the response parser`,
    hints: { maxBytes: 32768 },
    async prepare() {
      const { c, svid } = await ca();
      const def = workloadApiService().service[method]!;
      return {
        seeds: [def.responseSerialize(seed(c, svid))],
        run: (b) => {
          let decoded: unknown;
          try {
            decoded = def.responseDeserialize(Buffer.from(b));
          } catch {
            return 'not protobuf'; // grpc-js turns this into a stream error before the parser sees it
          }
          return parse(decoded as never);
        },
      };
    },
  };
}

SPIFFE_TARGETS.push(
  workloadApiTarget('workload-api-x509-svid', 'FetchX509SVID', parseX509Context, (c, svid) => ({
    svids: [{ spiffe_id: svid.svid.id.toString(), x509_svid: Buffer.concat(svid.svid.certificates.map((x) => x.raw)), x509_svid_key: svid.svid.privateKey.export({ type: 'pkcs8', format: 'der' }), bundle: c.bundleDer(), hint: 'a' }],
    crl: [],
    federated_bundles: { 'spiffe://other.example': c.bundleDer() },
  })),
  workloadApiTarget('workload-api-x509-bundles', 'FetchX509Bundles', parseX509Bundles, (c) => ({ crl: [], bundles: { [`spiffe://${TD}`]: c.bundleDer(), 'spiffe://other.example': c.bundleDer() } })),
  workloadApiTarget('workload-api-jwt-bundles', 'FetchJWTBundles', parseJwtBundles, (c) => ({ bundles: { [`spiffe://${TD}`]: Buffer.from(c.jwtBundle().toJwks()) } })),
);

/** DER length octets. */
function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
const derTlv = (tag: number, body: Uint8Array) => Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);

/** The first element (TBSCertificate) of a certificate's outer SEQUENCE. */
function tbsOf(cert: Uint8Array): Buffer {
  const b = Buffer.from(cert);
  const skip = (at: number) => (b[at + 1]! < 0x80 ? 2 : 2 + (b[at + 1]! & 0x7f));
  const len = (at: number) => (b[at + 1]! < 0x80 ? b[at + 1]! : b.subarray(at + 2, at + skip(at)).reduce((v, x) => v * 256 + x, 0));
  const inner = skip(0);
  return b.subarray(inner, inner + skip(inner) + len(inner));
}

const ECDSA_SHA256 = Buffer.from('300a06082a8648ce3d040302', 'hex');

/** A certificate from (possibly mutated) TBS bytes, signed by `issuerKey` (P-256). */
function signTbs(tbs: Uint8Array, issuerKey: KeyObject): Buffer {
  const sig = sign('sha256', tbs, issuerKey);
  return derTlv(0x30, Buffer.concat([tbs, ECDSA_SHA256, derTlv(0x03, Buffer.concat([Buffer.from([0]), sig]))]));
}

SPIFFE_TARGETS.push({
  name: 'x509-svid-resigned',
  about: 'X.509-SVID verification with each mutated leaf TBSCertificate re-signed by the issuing CA (extensions, names, validity)',
  hints: { maxBytes: 8192 },
  async prepare() {
    const root = await makeCa({ td: TD, name: 'Fuzz Root' });
    const leaf = await makeLeaf(root, { uris: [`spiffe://${TD}/agent`], name: 'agent', notAfter: new Date(Date.now() + 365 * 86_400_000) });
    const bundle = new X509Bundle(parseTrustDomain(TD), [root.cert]);
    return {
      seeds: [tbsOf(leaf.der)],
      run: (tbs) => verifyX509Svid(parseCertificatesDer(signTbs(tbs, root.privateKey)), bundle, new Date()),
    };
  },
});
