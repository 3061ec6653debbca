/**
 * DEVELOPMENT ONLY: the dev CA's building blocks: key algorithms and generation, serials, PEM,
 * and the option and result shapes of what it issues.
 */
// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata polyfill.
import 'reflect-metadata';
import { randomBytes, X509Certificate as NodeX509Certificate, type KeyObject, type webcrypto as wc } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import type { JWK, JWTPayload } from 'jose';
import type { SpiffeId } from '../spiffe/id.js';
import type { X509Svid } from '../spiffe/svid.js';

export type CryptoKey = wc.CryptoKey;
export type CryptoKeyPair = wc.CryptoKeyPair;
export type SigningAlgorithm = wc.Algorithm | wc.EcdsaParams;

export const webcrypto = globalThis.crypto;
export const ECDSA_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
export const ECDSA_SHA256 = { name: 'ECDSA', hash: 'SHA-256' } as const;
export const RSA_2048 = {
  name: 'RSASSA-PKCS1-v1_5',
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: 'SHA-256',
} as const;

/** Certificates are backdated a little so small clock skew between processes does not bite. */
export const BACKDATE_MS = 10_000;
export const CA_LIFETIME_MS = 365 * 24 * 3600 * 1000;
export const DEFAULT_SVID_TTL_SECONDS = 60;
export const JWT_SVID_DEFAULT_TTL_SECONDS = 300;

export type DevKeyType = 'ec-p256' | 'rsa-2048';

export type KeyUsageName = keyof typeof x509.KeyUsageFlags;
export type ExtKeyUsageName = keyof typeof x509.ExtendedKeyUsage;

export interface IssueSvidOptions {
  ttlSeconds?: number;
  notBefore?: Date;
  notAfter?: Date;
  keyType?: DevKeyType;
  hint?: string;
  /** Extra leaf extensions (e.g. claims that `access_control` entries name). */
  extensions?: CustomExtension[];
}

/** An extra X.509 extension: OID, criticality and the DER that goes into extnValue. */
export interface CustomExtension {
  oid: string;
  critical?: boolean;
  derValue: Uint8Array;
}

export interface IssuedSvid {
  svid: X509Svid;
  /** Leaf (then the intermediate in 'intermediate' mode), concatenated DER (the Workload API wire form). */
  certChainDer: Buffer;
  /** PKCS#8 DER. */
  keyDer: Buffer;
  certChainPem: string;
  keyPem: string;
  /** The authority that signed it (its SPIRE-style authority ID). */
  authorityId: string;
}

export interface IssueCertificateOptions {
  uris?: string[];
  dnsNames?: string[];
  subject?: string;
  isCa?: boolean;
  pathLength?: number;
  /** Default: keyCertSign+cRLSign for a CA, digitalSignature (+keyEncipherment for RSA) otherwise. Empty: no KU extension. */
  keyUsages?: KeyUsageName[];
  /** Default: serverAuth+clientAuth for a leaf, none for a CA. Empty: no EKU extension. */
  extKeyUsages?: (ExtKeyUsageName | string)[];
  notBefore?: Date;
  notAfter?: Date;
  /** Self-signed instead of issued by the active authority. */
  selfSigned?: boolean;
  keyType?: DevKeyType;
  /** Extra extensions, added after the standard ones. */
  extensions?: CustomExtension[];
}

export interface IssuedCertificate {
  certificate: NodeX509Certificate;
  privateKey: KeyObject;
  certDer: Buffer;
  certPem: string;
  /** The certificate followed by its issuing intermediate, if any (just the certificate when self-signed or 'leaf-only'). */
  chainDer: Buffer;
  chainPem: string;
  keyDer: Buffer;
  keyPem: string;
  /** The signing authority (absent when self-signed). */
  authorityId?: string;
}

export interface JwtKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export interface VerifiedJwtSvid {
  spiffeId: SpiffeId;
  claims: JWTPayload;
}

export function toBuffer(arrayBuffer: ArrayBuffer): Buffer {
  return Buffer.from(new Uint8Array(arrayBuffer));
}

export function pem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

/** A positive 128-bit serial (high bit cleared, first byte non-zero so DER needs no padding). */
export function randomSerialHex(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

export async function generateKeys(keyType: DevKeyType): Promise<CryptoKeyPair> {
  const alg = keyType === 'rsa-2048' ? RSA_2048 : ECDSA_P256;
  return (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
}

export function signingAlgorithmFor(key: CryptoKey): SigningAlgorithm {
  return key.algorithm.name === 'ECDSA' ? ECDSA_SHA256 : { name: 'RSASSA-PKCS1-v1_5' };
}

export async function exportPkcs8(key: CryptoKey): Promise<Buffer> {
  return toBuffer(await webcrypto.subtle.exportKey('pkcs8', key));
}

export function keyUsageFlags(names: KeyUsageName[]): number {
  return names.reduce((acc, n) => acc | x509.KeyUsageFlags[n], 0);
}
