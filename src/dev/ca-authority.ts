/**
 * DEVELOPMENT ONLY: the dev CA's signing authorities and how they are made.
 *
 * Like SPIRE without an UpstreamAuthority ('leaf-only', SPIRE's default), each authority is a
 * self-signed CA certificate that is both the bundle root and the signer of leaf SVIDs. Like
 * SPIRE with an UpstreamAuthority ('intermediate'), one fixed root (the "upstream") stays in the
 * bundle and each authority is an intermediate under it, sent with every SVID.
 */
// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata polyfill.
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { exportJWK, generateKeyPair } from 'jose';
import type { TrustDomain } from '../spiffe/id.js';
import { webcrypto, ECDSA_SHA256, BACKDATE_MS, CA_LIFETIME_MS, generateKeys, randomSerialHex, type CryptoKey, type JwtKey } from './ca-keys.js';

/** 'leaf-only': leaves signed by a bundle root (SPIRE's default). 'intermediate': leaf + intermediate (UpstreamAuthority). */
export type DevChainMode = 'leaf-only' | 'intermediate';
export const DEV_CHAIN_MODES: readonly DevChainMode[] = ['leaf-only', 'intermediate'];

/** SPIRE's local authority states: prepared (in the bundle, not signing), active (signing), old. */
export type AuthorityState = 'prepared' | 'active' | 'old';

export interface CaAuthority {
  /** Hex subject key ID of the signing certificate (what SPIRE calls the authority ID). */
  readonly id: string;
  /** The bundle certificate this authority chains to. */
  readonly root: x509.X509Certificate;
  /** Signs leaves: the root itself ('leaf-only') or an intermediate under the root. */
  readonly signer: x509.X509Certificate;
  readonly signerKey: CryptoKey;
  /** Sent after the leaf ('intermediate' mode only). */
  readonly intermediate: x509.X509Certificate | undefined;
  readonly jwt: JwtKey;
  state: AuthorityState;
  tainted: boolean;
}

/** The fixed root of 'intermediate' mode (plays SPIRE's UpstreamAuthority). */
export interface UpstreamRoot {
  cert: x509.X509Certificate;
  key: CryptoKey;
}

const ORG = 'O=attest-sidecar development CA';

function validity(): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  return { notBefore: new Date(now - BACKDATE_MS), notAfter: new Date(now + CA_LIFETIME_MS) };
}

async function caExtensions(publicKey: CryptoKey, pathLength: number | undefined, tdUri: string): Promise<x509.Extension[]> {
  return [
    new x509.BasicConstraintsExtension(true, pathLength, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(publicKey, false, webcrypto),
    new x509.SubjectAlternativeNameExtension([{ type: 'url', value: tdUri }]),
  ];
}

export async function createSelfSignedRoot(td: TrustDomain, label: string): Promise<UpstreamRoot> {
  const keys = await generateKeys('ec-p256');
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerialHex(),
      name: `${ORG}, CN=dev ${label} ${td.name} ${randomBytes(4).toString('hex')}`,
      ...validity(),
      keys,
      signingAlgorithm: ECDSA_SHA256,
      extensions: await caExtensions(keys.publicKey, undefined, td.idString()),
    },
    webcrypto,
  );
  return { cert, key: keys.privateKey };
}

async function createIntermediate(td: TrustDomain, upstream: UpstreamRoot): Promise<UpstreamRoot> {
  const keys = await generateKeys('ec-p256');
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerialHex(),
      subject: `${ORG}, CN=dev intermediate ${td.name} ${randomBytes(4).toString('hex')}`,
      issuer: upstream.cert.subject,
      ...validity(),
      publicKey: keys.publicKey,
      signingKey: upstream.key,
      signingAlgorithm: ECDSA_SHA256,
      extensions: [
        ...(await caExtensions(keys.publicKey, 0, td.idString())),
        await x509.AuthorityKeyIdentifierExtension.create(upstream.cert.publicKey, false, webcrypto),
      ],
    },
    webcrypto,
  );
  return { cert, key: keys.privateKey };
}

async function createJwtKey(): Promise<JwtKey> {
  const jwt = await generateKeyPair('ES256', { extractable: true });
  const kid = randomBytes(16).toString('base64url');
  const publicJwk = { ...(await exportJWK(jwt.publicKey)), kid, alg: 'ES256', use: 'jwt-svid' };
  return { kid, privateKey: jwt.privateKey, publicJwk };
}

function subjectKeyId(cert: x509.X509Certificate): string {
  const ext = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  return ext ? ext.keyId.toLowerCase() : Buffer.from(cert.serialNumber, 'hex').toString('hex');
}

/** A new authority in state 'prepared': a self-signed CA, or an intermediate under `upstream`. */
export async function createAuthority(td: TrustDomain, upstream: UpstreamRoot | undefined): Promise<CaAuthority> {
  const signer = upstream ? await createIntermediate(td, upstream) : await createSelfSignedRoot(td, 'root');
  return {
    id: subjectKeyId(signer.cert),
    root: upstream ? upstream.cert : signer.cert,
    signer: signer.cert,
    signerKey: signer.key,
    intermediate: upstream ? signer.cert : undefined,
    jwt: await createJwtKey(),
    state: 'prepared',
    tainted: false,
  };
}
