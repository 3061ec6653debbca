/** The X.509 bundles of every trust domain we know (own + federated), keyed by trust domain. */
import { TrustDomain } from '../id.js';
import { BundleError } from './errors.js';
import { X509Bundle, X509BundleSource } from './x509-bundle.js';

export class BundleSet implements X509BundleSource {
  private readonly byName = new Map<string, X509Bundle>();

  /**
   * The same trust domain twice is accepted only when both bundles are equal (the Workload
   * API repeats the own bundle per SVID); two different bundles for one domain are refused
   * rather than merged or silently overridden.
   */
  constructor(bundles: Iterable<X509Bundle>) {
    for (const b of bundles) {
      const prev = this.byName.get(b.trustDomain.name);
      if (prev && !prev.equals(b)) {
        throw new BundleError('bundle_set_conflict', `two different X.509 bundles for trust domain "${b.trustDomain.name}"`);
      }
      this.byName.set(b.trustDomain.name, b);
    }
  }

  getX509Bundle(td: TrustDomain): X509Bundle | undefined {
    return this.byName.get(td.name);
  }

  has(td: TrustDomain): boolean {
    return this.byName.has(td.name);
  }

  /** Sorted by name. */
  trustDomains(): TrustDomain[] {
    return this.bundles().map((b) => b.trustDomain);
  }

  /** Sorted by trust domain name. */
  bundles(): X509Bundle[] {
    return [...this.byName.values()].sort((a, b) => a.trustDomain.compare(b.trustDomain));
  }

  /**
   * Every authority of every domain, PEM, for an OpenSSL `ca` option. OpenSSL does not know
   * which domain a root belongs to: verifyX509Svid must still decide per trust domain.
   */
  allAuthoritiesPem(): string {
    return this.bundles()
      .map((b) => b.toPem())
      .join('');
  }

  equals(o: BundleSet): boolean {
    if (this.byName.size !== o.byName.size) return false;
    for (const [name, b] of this.byName) {
      const other = o.byName.get(name);
      if (!other || !b.equals(other)) return false;
    }
    return true;
  }
}
