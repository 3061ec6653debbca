/**
 * Test-only synthetic AMD SEV-SNP material: an ARK/ASK/ASVK hierarchy with the real AMD names
 * and extensions (ECDSA P-384 instead of RSA-PSS, to keep key generation fast), VCEKs/VLEKs
 * with chosen TCB and hwID, and reports signed with their keys. Real AMD samples live in
 * ../shared/conformance; these cover what no real sample can (a VCEK whose TCB or chip differs
 * from a correctly signed report, Turin and v5 reports, certificate tables).
 */
import 'reflect-metadata'; // @peculiar/x509 (tsyringe) needs the Reflect metadata polyfill
import * as x509 from '@peculiar/x509';
import { createPrivateKey, sign, type KeyObject, webcrypto } from 'node:crypto';
import type { SnpProduct } from '../../src/attestation/sev-snp/tcb.js';

x509.cryptoProvider.set(globalThis.crypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKeyPair = webcrypto.CryptoKeyPair;
const AMD = '1.3.6.1.4.1.3704.1';
const ALG = { name: 'ECDSA', hash: 'SHA-384' } as webcrypto.EcdsaParams;
const DN = 'OU=Engineering, C=US, L=Santa Clara, ST=CA, O=Advanced Micro Devices';

export interface SynthCert {
  der: Buffer;
  pem: string;
  keys: CryptoKeyPair;
  privateKey: KeyObject;
  subject: string;
}

async function keys(): Promise<CryptoKeyPair> {
  return (await globalThis.crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function make(
  cn: string,
  issuer: SynthCert | undefined,
  extensions: x509.Extension[],
  validity: { notBefore?: Date; notAfter?: Date } = {},
): Promise<SynthCert> {
  const k = await keys();
  const subject = `${DN}, CN=${cn}`;
  const c = await x509.X509CertificateGenerator.create({
    serialNumber: '00',
    subject,
    issuer: issuer?.subject ?? subject,
    notBefore: validity.notBefore ?? new Date('2020-01-01T00:00:00Z'),
    notAfter: validity.notAfter ?? new Date('2045-01-01T00:00:00Z'),
    signingAlgorithm: ALG,
    publicKey: k.publicKey as never,
    signingKey: (issuer?.keys ?? k).privateKey as never,
    extensions,
  });
  const pkcs8 = Buffer.from(await globalThis.crypto.subtle.exportKey('pkcs8', k.privateKey));
  return {
    der: Buffer.from(c.rawData),
    pem: c.toString('pem'),
    keys: k,
    privateKey: createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }),
    subject,
  };
}

export interface SynthHierarchy {
  product: SnpProduct;
  ark: SynthCert;
  ask: SynthCert;
  asvk: SynthCert;
}

export async function makeHierarchy(product: SnpProduct): Promise<SynthHierarchy> {
  const ca = [new x509.BasicConstraintsExtension(true, undefined, true)];
  const ark = await make(`ARK-${product}`, undefined, ca);
  return { product, ark, ask: await make(`SEV-${product}`, ark, ca), asvk: await make(`SEV-VLEK-${product}`, ark, ca) };
}

const derInt = (n: number) => {
  const bytes = n === 0 ? [0] : [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  if (bytes[0]! & 0x80) bytes.unshift(0);
  return new Uint8Array([0x02, bytes.length, ...bytes]);
};
const ia5 = (s: string) => new Uint8Array([0x16, s.length, ...Buffer.from(s, 'latin1')]);
const ext = (oid: string, value: Uint8Array) => new x509.Extension(`${AMD}.${oid}`, false, value);

export interface SynthTcb {
  bootloader: number;
  tee: number;
  snp: number;
  microcode: number;
  fmc?: number;
}

export interface EndorsementOptions {
  kind?: 'vcek' | 'vlek';
  tcb: SynthTcb;
  /** VCEK only; 64 bytes (8 for Turin). */
  hwId?: Uint8Array;
  productName?: string;
  /** Sign with this certificate instead of the hierarchy's ASK/ASVK. */
  issuer?: SynthCert;
  notBefore?: Date;
  notAfter?: Date;
}

export async function makeEndorsement(h: SynthHierarchy, o: EndorsementOptions): Promise<SynthCert> {
  const kind = o.kind ?? 'vcek';
  const exts = [
    ext('1', derInt(1)),
    ext('2', ia5(o.productName ?? (h.product === 'Milan' ? 'Milan-B0' : h.product))),
    ext('3.1', derInt(o.tcb.bootloader)),
    ext('3.2', derInt(o.tcb.tee)),
    ext('3.3', derInt(o.tcb.snp)),
    ...['3.4', '3.5', '3.6', '3.7'].map((id) => ext(id, derInt(0))),
    ext('3.8', derInt(o.tcb.microcode)),
  ];
  if (o.tcb.fmc !== undefined) exts.push(ext('3.9', derInt(o.tcb.fmc)));
  if (kind === 'vcek') exts.push(ext('4', o.hwId ?? new Uint8Array(h.product === 'Turin' ? 8 : 64)));
  else exts.push(ext('5', ia5('cc-test.example')));
  const issuer = o.issuer ?? (kind === 'vcek' ? h.ask : h.asvk);
  return make(kind === 'vcek' ? 'SEV-VCEK' : 'SEV-VLEK', issuer, exts, o);
}

/** 8 TCB_VERSION bytes in the product's layout. */
export function tcbBytes(product: SnpProduct, t: SynthTcb): Buffer {
  const b = Buffer.alloc(8);
  if (product === 'Turin') b.set([t.fmc ?? 0, t.bootloader, t.tee, t.snp, 0, 0, 0, t.microcode]);
  else b.set([t.bootloader, t.tee, 0, 0, 0, 0, t.snp, t.microcode]);
  return b;
}

export interface SynthReportOptions {
  version?: 2 | 3 | 5;
  product: SnpProduct;
  tcb: SynthTcb;
  chipId?: Uint8Array;
  signingKey?: 'vcek' | 'vlek';
  policy?: bigint;
  reportData?: Uint8Array;
  mitVectors?: [bigint, bigint];
}

const CPUID: Record<SnpProduct, [number, number, number]> = { Milan: [0x19, 0x01, 1], Genoa: [0x19, 0x11, 1], Turin: [0x1a, 0x02, 0] };

/** A report signed with `key` (the VCEK/VLEK private key). */
export function makeReport(o: SynthReportOptions, key: KeyObject): Buffer {
  const version = o.version ?? 3;
  const b = Buffer.alloc(0x4a0);
  b.writeUInt32LE(version, 0);
  b.writeUInt32LE(7, 4);
  b.writeBigUInt64LE(o.policy ?? 0x30000n, 8);
  b.fill(0x0f, 0x10, 0x30);
  b.writeUInt32LE(1, 0x34);
  const tcb = tcbBytes(o.product, o.tcb);
  for (const off of [0x38, 0x180, 0x1e0, 0x1f0]) tcb.copy(b, off);
  b.writeBigUInt64LE(0x25n, 0x40);
  b.writeUInt32LE(o.signingKey === 'vlek' ? 4 : 0, 0x48);
  (o.reportData ? Buffer.from(o.reportData) : Buffer.alloc(64, 0x5a)).copy(b, 0x50);
  b.fill(0xa1, 0x90, 0xc0);
  b.fill(0xff, 0x160, 0x180);
  if (version >= 3) b.set(CPUID[o.product], 0x188);
  if (o.chipId) b.set(o.chipId, 0x1a0);
  b.set([4, 55, 1], 0x1e8);
  b.set([4, 55, 1], 0x1ec);
  if (version >= 5) {
    b.writeBigUInt64LE(o.mitVectors?.[0] ?? 3n, 0x1f8);
    b.writeBigUInt64LE(o.mitVectors?.[1] ?? 7n, 0x200);
  }
  return resign(b, key);
}

/** Re-signs bytes 0..0x29F in place (after a test edits signed fields) and returns the buffer. */
export function resign(b: Buffer, key: KeyObject): Buffer {
  const sig = sign('sha384', b.subarray(0, 0x2a0), { key, dsaEncoding: 'ieee-p1363' });
  b.fill(0, 0x2a0);
  for (let i = 0; i < 48; i++) {
    b[0x2a0 + i] = sig[47 - i]!;
    b[0x2a0 + 72 + i] = sig[95 - i]!;
  }
  return b;
}
