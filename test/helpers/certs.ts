/**
 * Test-only certificate factory: CAs, intermediates and SVID leaves generated at run time
 * with @peculiar/x509 over WebCrypto (globalThis.crypto). Never use outside tests.
 *
 *   const root = await makeCa({ td: 'example.org' });
 *   const mid = await makeIntermediate(root);
 *   const leaf = await makeLeaf(mid, { uris: ['spiffe://example.org/w'] });
 *   leaf.chain  // [leaf, mid] as node:crypto X509Certificate
 */
import 'reflect-metadata'; // @peculiar/x509 (tsyringe) needs the Reflect metadata polyfill
import * as x509 from '@peculiar/x509';
import { spawnSync } from 'node:child_process';
import { createPrivateKey, KeyObject, sign, X509Certificate, webcrypto } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

type CryptoKeyPair = webcrypto.CryptoKeyPair;

x509.cryptoProvider.set(globalThis.crypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export type KeyAlg = 'P-256' | 'P-384' | 'RSA' | 'Ed25519';
export const KU = x509.KeyUsageFlags;

export interface TestCert {
  /** node:crypto certificate */
  readonly cert: X509Certificate;
  readonly pem: string;
  readonly der: Buffer;
  readonly keys: CryptoKeyPair;
  readonly privateKey: KeyObject;
  readonly keyPem: string;
  readonly subject: string;
  /** this certificate then its issuers, up to (excluding) the self-signed root */
  readonly chain: readonly X509Certificate[];
  readonly alg: KeyAlg;
}

export interface CertOptions {
  /** Trust domain; a CA gets URI SAN spiffe://<td> unless `uris` is given. */
  td?: string;
  /** Subject CN (distinct names make clearer failures; equal names test name collisions). */
  name?: string;
  uris?: string[];
  ca?: boolean;
  /** KeyUsageFlags bitmask; `null` omits the extension. */
  keyUsages?: number | null;
  pathLength?: number;
  notBefore?: Date;
  notAfter?: Date;
  alg?: KeyAlg;
  /** Serial number hex (default random). */
  serialNumber?: string;
  /** Extra extensions (e.g. an unknown critical one). */
  extensions?: x509.Extension[];
  /** Whose key the AuthorityKeyIdentifier names (default: the real issuer); null omits it. */
  akiFrom?: TestCert | null;
  /** Signature hash (default SHA-256). */
  hash?: 'SHA-1' | 'SHA-256' | 'SHA-384';
}

const HOUR = 3600_000;

function keyAlgorithm(alg: KeyAlg): webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams | webcrypto.Algorithm {
  switch (alg) {
    case 'P-256':
    case 'P-384':
      return { name: 'ECDSA', namedCurve: alg };
    case 'RSA':
      return { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' };
    case 'Ed25519':
      return { name: 'Ed25519' };
  }
}

function signingAlgorithm(alg: KeyAlg, hash: string): webcrypto.Algorithm {
  switch (alg) {
    case 'P-256':
    case 'P-384':
      return { name: 'ECDSA', hash } as webcrypto.EcdsaParams;
    case 'RSA':
      return { name: 'RSASSA-PKCS1-v1_5', hash } as webcrypto.Algorithm;
    case 'Ed25519':
      return { name: 'Ed25519' };
  }
}

export async function generateKeys(alg: KeyAlg = 'P-256'): Promise<CryptoKeyPair> {
  return (await globalThis.crypto.subtle.generateKey(keyAlgorithm(alg) as webcrypto.EcKeyGenParams, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function toTestCert(
  generated: x509.X509Certificate,
  keys: CryptoKeyPair,
  subject: string,
  issuerChain: readonly X509Certificate[],
  alg: KeyAlg,
): Promise<TestCert> {
  const der = Buffer.from(generated.rawData);
  const cert = new X509Certificate(der);
  const pkcs8 = Buffer.from(await globalThis.crypto.subtle.exportKey('pkcs8', keys.privateKey));
  const privateKey = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
  return {
    cert,
    pem: cert.toString(),
    der,
    keys,
    privateKey,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    subject,
    chain: [cert, ...issuerChain],
    alg,
  };
}

async function buildExtensions(keys: CryptoKeyPair, issuer: TestCert | undefined, o: CertOptions, isCa: boolean): Promise<x509.Extension[]> {
  const exts: x509.Extension[] = [];
  if (o.ca !== undefined || isCa) exts.push(new x509.BasicConstraintsExtension(o.ca ?? isCa, o.pathLength, true));
  const ku = o.keyUsages === undefined ? (isCa ? KU.keyCertSign | KU.cRLSign : KU.digitalSignature) : o.keyUsages;
  if (ku !== null) exts.push(new x509.KeyUsagesExtension(ku, true));
  const uris = o.uris ?? (o.td ? [`spiffe://${o.td}`] : []);
  if (uris.length > 0) exts.push(new x509.SubjectAlternativeNameExtension(uris.map((u) => ({ type: 'url' as const, value: u }))));
  exts.push(await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never));
  const akiSource = o.akiFrom === undefined ? issuer : o.akiFrom;
  if (issuer && akiSource) exts.push(await x509.AuthorityKeyIdentifierExtension.create(akiSource.keys.publicKey as never));
  // A custom extension with the OID of a default one replaces it (e.g. an empty SKI).
  const custom = new Set((o.extensions ?? []).map((e) => e.type));
  return [...exts.filter((e) => !custom.has(e.type)), ...(o.extensions ?? [])];
}

function validity(o: CertOptions): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: o.notBefore ?? new Date(now - HOUR), notAfter: o.notAfter ?? new Date(now + 24 * HOUR) };
}

let counter = 0;

/** Self-signed root CA (CA:TRUE, KU keyCertSign|cRLSign, URI SAN spiffe://<td>). */
export async function makeCa(o: CertOptions = {}): Promise<TestCert> {
  const alg = o.alg ?? 'P-256';
  const keys = await generateKeys(alg);
  const subject = `CN=${o.name ?? `Test Root ${++counter}`}, O=attest-sidecar tests`;
  const generated = await x509.X509CertificateGenerator.createSelfSigned({
    name: subject,
    keys: keys as never,
    ...validity(o),
    ...(o.serialNumber !== undefined ? { serialNumber: o.serialNumber } : {}),
    signingAlgorithm: signingAlgorithm(alg, o.hash ?? 'SHA-256') as never,
    extensions: await buildExtensions(keys, undefined, { ...o, td: o.td ?? 'example.org' }, true),
  });
  return toTestCert(generated, keys, subject, [], alg);
}

async function issue(issuer: TestCert, o: CertOptions, isCa: boolean, defaultName: string): Promise<TestCert> {
  const alg = o.alg ?? 'P-256';
  const keys = await generateKeys(alg);
  const subject = `CN=${o.name ?? defaultName}, O=attest-sidecar tests`;
  const generated = await x509.X509CertificateGenerator.create({
    subject,
    issuer: issuer.subject,
    publicKey: keys.publicKey as never,
    signingKey: issuer.keys.privateKey as never,
    ...validity(o),
    ...(o.serialNumber !== undefined ? { serialNumber: o.serialNumber } : {}),
    signingAlgorithm: signingAlgorithm(issuer.alg, o.hash ?? 'SHA-256') as never,
    extensions: await buildExtensions(keys, issuer, o, isCa),
  });
  // chain excludes the self-signed root
  const issuerChain = issuer.chain.length === 1 && issuer.cert.checkIssued(issuer.cert) ? [] : issuer.chain;
  return toTestCert(generated, keys, subject, issuerChain, alg);
}

/** Intermediate CA signed by `issuer` (CA:TRUE, KU keyCertSign|cRLSign). */
export function makeIntermediate(issuer: TestCert, o: CertOptions = {}): Promise<TestCert> {
  return issue(issuer, o, true, `Test Intermediate ${++counter}`);
}

/** Leaf signed by `issuer`: CA:FALSE (unless `ca`), KU digitalSignature, the given URI SANs. */
export function makeLeaf(issuer: TestCert, o: CertOptions = {}): Promise<TestCert> {
  return issue(issuer, { ca: false, ...o }, false, `Test Leaf ${++counter}`);
}

/**
 * A P-256 SVID leaf issued by the real `openssl` CLI (e.g. serial number 0, which
 * @peculiar/x509 never produces). Synchronous; temporary files are removed.
 */
export function opensslIssueLeaf(issuer: TestCert, o: { uri: string; serial: string; days?: number }): { cert: X509Certificate; pem: string; keyPem: string } {
  const dir = mkdtempSync(join(tmpdir(), 'svid-openssl-'));
  try {
    const run = (args: string[]) => {
      const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
    };
    writeFileSync(join(dir, 'ca.pem'), issuer.pem);
    writeFileSync(join(dir, 'ca.key'), issuer.keyPem);
    writeFileSync(
      join(dir, 'ext.cnf'),
      `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nsubjectAltName=URI:${o.uri}\n`,
    );
    run(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'leaf.sec1']);
    run(['pkcs8', '-topk8', '-nocrypt', '-in', 'leaf.sec1', '-out', 'leaf.key']);
    run(['req', '-new', '-key', 'leaf.key', '-subj', '/CN=openssl-leaf', '-out', 'leaf.csr']);
    run(['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', o.serial,
      '-days', String(o.days ?? 1), '-sha256', '-extfile', 'ext.cnf', '-out', 'leaf.pem']);
    const pem = readFileSync(join(dir, 'leaf.pem'), 'utf8');
    return { cert: new X509Certificate(pem), pem, keyPem: readFileSync(join(dir, 'leaf.key'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** An arbitrary extension (e.g. an unknown critical one) for CertOptions.extensions. */
export function customExtension(oid: string, critical: boolean, derValue: Uint8Array): x509.Extension {
  return new x509.Extension(oid, critical, derValue);
}

/** DER TLV of `tag` over `content` (definite length). */
export function derTlv(tag: number, content: Uint8Array): Buffer {
  const n = content.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...len]), content]);
}

/** [header length, content length] of the DER TLV at `offset`. */
function tlvAt(der: Uint8Array, offset: number): [number, number] {
  const first = der[offset + 1]!;
  if (first < 0x80) return [2, first];
  let len = 0;
  for (let i = 0; i < (first & 0x7f); i++) len = len * 256 + der[offset + 2 + i]!;
  return [2 + (first & 0x7f), len];
}

/**
 * `cert` with its TBSCertificate bytes rewritten by `edit` and signed again by `issuer`
 * (ECDSA issuers; `hash` must be the certificate's signature hash): a correctly signed certificate carrying bytes no generator emits,
 * e.g. a malformed validity time.
 */
export function resignEdited(
  cert: { der: Buffer },
  issuer: { privateKey: KeyObject },
  edit: (tbs: Buffer) => Buffer,
  hash: 'sha256' | 'sha384' = 'sha256',
): X509Certificate {
  const der = cert.der;
  const [outerHeader] = tlvAt(der, 0);
  const [tbsHeader, tbsLength] = tlvAt(der, outerHeader);
  const tbsEnd = outerHeader + tbsHeader + tbsLength;
  const [algHeader, algLength] = tlvAt(der, tbsEnd);
  const sigAlg = der.subarray(tbsEnd, tbsEnd + algHeader + algLength);
  const tbs = edit(Buffer.from(der.subarray(outerHeader, tbsEnd)));
  const signature = sign(hash, tbs, issuer.privateKey);
  const body = Buffer.concat([tbs, sigAlg, derTlv(0x03, Buffer.concat([Buffer.from([0]), signature]))]);
  return new X509Certificate(derTlv(0x30, body));
}
