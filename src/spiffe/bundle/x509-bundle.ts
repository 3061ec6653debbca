/** X.509 trust bundle of one trust domain (go-spiffe x509bundle). */
import { X509Certificate } from 'node:crypto';
import { TrustDomain } from '../id.js';
import { certsToPem, parseCertificatesDer, parseCertificatesPem } from '../x509.js';
import { BundleError } from './errors.js';

export interface X509BundleSource {
  getX509Bundle(td: TrustDomain): X509Bundle | undefined;
}

export class X509Bundle implements X509BundleSource {
  readonly trustDomain: TrustDomain;
  /** Deduplicated (by DER), in first-seen order. */
  readonly authorities: readonly X509Certificate[];

  constructor(td: TrustDomain, authorities: Iterable<X509Certificate> = []) {
    this.trustDomain = td;
    const seen = new Set<string>();
    const list: X509Certificate[] = [];
    for (const cert of authorities) {
      const fingerprint = cert.fingerprint256;
      if (seen.has(fingerprint)) continue;
      seen.add(fingerprint);
      list.push(cert);
    }
    this.authorities = Object.freeze(list);
  }

  /** PEM CERTIFICATE blocks; an empty input is an empty bundle (go-spiffe Parse). */
  static fromPem(td: TrustDomain, pem: string | Uint8Array): X509Bundle {
    if (pem.length === 0) return new X509Bundle(td);
    try {
      return new X509Bundle(td, parseCertificatesPem(pem));
    } catch (err) {
      throw new BundleError('x509_bundle_invalid', `x509bundle: cannot parse certificate: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Concatenated DER certificates (go-spiffe ParseRaw; the Workload API form). */
  static fromDer(td: TrustDomain, der: Uint8Array): X509Bundle {
    try {
      return new X509Bundle(td, parseCertificatesDer(der));
    } catch (err) {
      throw new BundleError('x509_bundle_invalid', `x509bundle: cannot parse certificate: ${(err as Error).message}`, { cause: err });
    }
  }

  getX509Bundle(td: TrustDomain): X509Bundle | undefined {
    return td.equals(this.trustDomain) ? this : undefined;
  }

  hasAuthority(cert: X509Certificate): boolean {
    const fingerprint = cert.fingerprint256;
    return this.authorities.some((a) => a.fingerprint256 === fingerprint);
  }

  toPem(): string {
    return certsToPem(this.authorities);
  }

  toDer(): Buffer {
    return Buffer.concat(this.authorities.map((c) => c.raw));
  }

  /** Same trust domain and the same authorities in the same order (go-spiffe Equal). */
  equals(o: X509Bundle): boolean {
    return (
      this.trustDomain.equals(o.trustDomain) &&
      this.authorities.length === o.authorities.length &&
      this.authorities.every((c, i) => c.raw.equals(o.authorities[i]!.raw))
    );
  }
}
