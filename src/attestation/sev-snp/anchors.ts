/**
 * AMD trust anchors (ARK, ASK, ASVK per product) and VCEK/VLEK chain verification.
 *
 *   ARK-<product> (self-signed root) -> SEV-<product> (ASK)      -> SEV-VCEK
 *                                    -> SEV-VLEK-<product> (ASVK) -> SEV-VLEK
 *
 * Anchors are parsed and their ARK/ASK/ASVK signatures checked once, at load; the caller keeps
 * the returned object. Verifying a VCEK chain costs one RSA-PSS check, so verified chains are
 * remembered in a small per-anchors cache keyed by the VCEK's SHA-256 fingerprint: a hit skips
 * only the signature, validity at `now` is always re-checked.
 */
import { X509Certificate } from 'node:crypto';
import { validityMs } from '../../spiffe/x509-strict.js';
import { ConfigError } from '../../errors.js';
import { AttestationError } from '../types.js';
import { commonName, type SnpEndorsementCert } from './certs.js';
import { SNP_PRODUCTS, type SnpProduct } from './tcb.js';

export interface SnpProductAnchors {
  ark: X509Certificate;
  /** Signs VCEKs. */
  ask?: X509Certificate;
  /** Signs VLEKs. */
  asvk?: X509Certificate;
}

export interface SnpTrustAnchors {
  readonly products: Readonly<Partial<Record<SnpProduct, SnpProductAnchors>>>;
}

type Role = 'ark' | 'ask' | 'asvk';

/** "ARK-Milan" -> ark/Milan, "SEV-Milan" -> ask/Milan, "SEV-VLEK-Milan" -> asvk/Milan. */
function roleOf(cn: string): { role: Role; product: SnpProduct } | undefined {
  const m = /^(ARK|SEV|SEV-VLEK)-(\w+)$/.exec(cn);
  const product = SNP_PRODUCTS.find((p) => p === m?.[2]);
  if (!m || !product) return undefined;
  return { role: m[1] === 'ARK' ? 'ark' : m[1] === 'SEV' ? 'ask' : 'asvk', product };
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----/g;

/**
 * Loads AMD anchors from PEM texts: KDS `cert_chain` files ("ASK then ARK"), single-certificate
 * files, or any mix; certificates are sorted by role and product from their subject CN. Each
 * ASK/ASVK must be signed by its product's ARK and each ARK must be self-signed.
 * Throws ConfigError (reason config_invalid) on anything unexpected.
 */
export function loadSnpAnchors(pemTexts: string[]): SnpTrustAnchors {
  const found: Partial<Record<SnpProduct, Partial<Record<Role, X509Certificate>>>> = {};
  for (const [i, text] of pemTexts.entries()) {
    const blocks = text.match(PEM_BLOCK) ?? [];
    if (blocks.length === 0) throw new ConfigError(`SEV-SNP anchors: PEM text #${i + 1} holds no certificate`);
    for (const pem of blocks) {
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(pem);
      } catch (err) {
        throw new ConfigError(`SEV-SNP anchors: PEM text #${i + 1}: ${(err as Error).message}`);
      }
      const cn = commonName(cert.subject);
      const r = roleOf(cn);
      if (!r) throw new ConfigError(`SEV-SNP anchors: unexpected certificate CN "${cn}" (want ARK-*, SEV-* or SEV-VLEK-*)`);
      const slot = (found[r.product] ??= {});
      const prior = slot[r.role];
      if (prior && prior.fingerprint256 !== cert.fingerprint256) {
        throw new ConfigError(`SEV-SNP anchors: two different "${cn}" certificates`);
      }
      slot[r.role] = cert;
    }
  }
  const products: Partial<Record<SnpProduct, SnpProductAnchors>> = {};
  for (const product of SNP_PRODUCTS) {
    const slot = found[product];
    if (!slot) continue;
    const ark = slot.ark;
    if (!ark) throw new ConfigError(`SEV-SNP anchors: ${product} ASK/ASVK given without ARK-${product}`);
    if (!ark.verify(ark.publicKey) || ark.issuer !== ark.subject) {
      throw new ConfigError(`SEV-SNP anchors: ARK-${product} is not self-signed`);
    }
    for (const role of ['ask', 'asvk'] as const) {
      const cert = slot[role];
      if (cert && (cert.issuer !== ark.subject || !cert.verify(ark.publicKey))) {
        throw new ConfigError(`SEV-SNP anchors: ${commonName(cert.subject)} is not signed by ARK-${product}`);
      }
    }
    products[product] = { ark, ...(slot.ask && { ask: slot.ask }), ...(slot.asvk && { asvk: slot.asvk }) };
  }
  if (Object.keys(products).length === 0) throw new ConfigError('SEV-SNP anchors: no certificates');
  return Object.freeze({ products: Object.freeze(products) });
}

/** Per-anchors cache of verified endorsement chains: fingerprint|product -> true. */
const chainCache = new WeakMap<SnpTrustAnchors, Map<string, true>>();
const CHAIN_CACHE_MAX = 256;

/**
 * Verifies that `cert` (VCEK or VLEK) chains to the configured anchors of `product` and that
 * every certificate is valid at `now`. A VCEK must be signed by the ASK, a VLEK by the ASVK;
 * nothing else is accepted.
 * Errors: chain_invalid (wrong issuer, bad signature, no anchors for the product),
 * collateral_expired (outside validity).
 */
export function verifyEndorsementChain(
  cert: SnpEndorsementCert,
  anchors: SnpTrustAnchors,
  product: SnpProduct,
  now: Date,
): void {
  const a = anchors.products[product];
  if (!a) {
    throw new AttestationError('chain_invalid', `no ${product} ARK configured: the ${cert.kind.toUpperCase()} cannot chain to a trust anchor`);
  }
  const intermediate = cert.kind === 'vcek' ? a.ask : a.asvk;
  const intermediateName = cert.kind === 'vcek' ? `SEV-${product} (ASK)` : `SEV-VLEK-${product} (ASVK)`;
  if (!intermediate) {
    throw new AttestationError('chain_invalid', `no ${intermediateName} configured to verify the ${cert.kind.toUpperCase()}`);
  }
  checkValidity(cert.x509, cert.kind.toUpperCase(), now);
  checkValidity(intermediate, intermediateName, now);
  checkValidity(a.ark, `ARK-${product}`, now);

  let cache = chainCache.get(anchors);
  if (!cache) chainCache.set(anchors, (cache = new Map()));
  const key = `${cert.fingerprint}|${product}|${cert.kind}`;
  if (cache.has(key)) return;
  if (cert.x509.issuer !== intermediate.subject) {
    throw new AttestationError(
      'chain_invalid',
      `${cert.kind.toUpperCase()} issuer "${cert.issuerCn}" is not ${intermediateName}`,
    );
  }
  if (!cert.x509.verify(intermediate.publicKey)) {
    throw new AttestationError('chain_invalid', `${cert.kind.toUpperCase()} signature does not verify under ${intermediateName}`);
  }
  if (cache.size >= CHAIN_CACHE_MAX) cache.delete(cache.keys().next().value!);
  cache.set(key, true);
}

/**
 * Validity read from the DER (x509-strict): node's validFrom/validTo of a malformed time is
 * "Bad time value", an Invalid Date that every comparison lets through.
 */
export function strictValidity(cert: X509Certificate, name: string): { notBeforeMs: number; notAfterMs: number } {
  try {
    return validityMs(cert.raw);
  } catch (err) {
    throw new AttestationError('evidence_malformed', `${name} certificate: ${(err as Error).message}`, { cause: err });
  }
}

function checkValidity(cert: X509Certificate, name: string, now: Date): void {
  const { notBeforeMs, notAfterMs } = strictValidity(cert, name);
  const from = new Date(notBeforeMs);
  const to = new Date(notAfterMs);
  if (now < from || now > to) {
    throw new AttestationError(
      'collateral_expired',
      `${name} certificate is valid ${from.toISOString()} .. ${to.toISOString()}, not at ${now.toISOString()}`,
    );
  }
}

/** Earliest notAfter of the endorsement certificate and its chain (for the caller's cache). */
export function chainNotAfter(cert: SnpEndorsementCert, anchors: SnpTrustAnchors, product: SnpProduct): Date {
  const a = anchors.products[product]!;
  const certs = [cert.x509, a.ark, cert.kind === 'vcek' ? a.ask : a.asvk].filter((c): c is X509Certificate => !!c);
  return new Date(Math.min(...certs.map((c) => strictValidity(c, 'SEV-SNP').notAfterMs)));
}
