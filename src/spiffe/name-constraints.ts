/**
 * URI name constraints (RFC 5280 4.2.1.10, extension 2.5.29.30) as the X509-SVID standard
 * (section 4.2) reads them: they constrain the URI's host, i.e. the SPIFFE trust domain.
 *   'a.test'   matches exactly the host a.test
 *   '.a.test'  matches any host with one or more labels prepended (x.a.test), not a.test
 * Only uniformResourceIdentifier subtrees are enforced; x509.ts decides what to do with a
 * nameConstraints extension that also holds other name types (refuse it when critical).
 */
import { AsnConvert } from '@peculiar/asn1-schema';
import { GeneralName, GeneralSubtrees, NameConstraints } from '@peculiar/asn1-x509';

/** Host / domain constraints, ASCII-lower-cased. An empty list constrains nothing. */
export interface UriNameConstraints {
  readonly permitted: readonly string[];
  readonly excluded: readonly string[];
}

export interface ParsedNameConstraints {
  /** The URI subtrees; undefined when there are none. */
  readonly constraints: UriNameConstraints | undefined;
  /** Why the extension as a whole cannot be enforced here, if it cannot. */
  readonly unsupported: string | undefined;
}

const GENERAL_NAME_TYPES = [
  'otherName',
  'rfc822Name',
  'dNSName',
  'x400Address',
  'directoryName',
  'ediPartyName',
  'uniformResourceIdentifier',
  'iPAddress',
  'registeredID',
] as const;

function generalNameType(gn: GeneralName): string {
  return GENERAL_NAME_TYPES.find((k) => gn[k] !== undefined) ?? 'unknown';
}

/**
 * RFC 5280 compares hosts case-insensitively in ASCII only (as OpenSSL does). No Unicode
 * folding: 'K' (Kelvin sign).toLowerCase() is 'k', which would make a foreign base match.
 */
export function asciiLower(text: string): string {
  return text.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

/**
 * The DER value of a nameConstraints extension -> its URI subtrees, plus why it cannot be
 * enforced when it holds other name types, a minimum/maximum (RFC 5280: MUST be 0 / absent)
 * or no subtrees at all. Throws on bad ASN.1 (the caller reports a malformed certificate).
 */
export function parseUriNameConstraints(der: ArrayBuffer): ParsedNameConstraints {
  const nc = AsnConvert.parse(der, NameConstraints);
  const otherTypes = new Set<string>();
  let minMax = false;
  let subtreeCount = 0;
  const uriBases = (subtrees: GeneralSubtrees | undefined): string[] => {
    const bases: string[] = [];
    for (const st of subtrees ?? []) {
      subtreeCount++;
      const uri = st.base.uniformResourceIdentifier;
      if (uri === undefined) {
        otherTypes.add(generalNameType(st.base));
        continue;
      }
      if (st.minimum !== 0 || st.maximum !== undefined) minMax = true;
      bases.push(asciiLower(uri));
    }
    return bases;
  };
  const permitted = uriBases(nc.permittedSubtrees);
  const excluded = uriBases(nc.excludedSubtrees);

  const problems: string[] = [];
  if (otherTypes.size > 0) problems.push(`name type(s) ${[...otherTypes].join(', ')} not supported (only uniformResourceIdentifier)`);
  if (minMax) problems.push('uniformResourceIdentifier subtrees with a minimum or maximum are not supported');
  if (subtreeCount === 0) problems.push('no subtrees');
  const constraints =
    permitted.length + excluded.length > 0
      ? Object.freeze({ permitted: Object.freeze(permitted), excluded: Object.freeze(excluded) })
      : undefined;
  return { constraints, unsupported: problems.length > 0 ? problems.join('; ') : undefined };
}

/** Does `host` (a trust domain) fall under the URI constraint `base`? */
export function uriHostMatches(host: string, base: string): boolean {
  const h = asciiLower(host);
  if (base.startsWith('.')) return h.length > base.length && h.endsWith(base);
  return h === base;
}

/**
 * Why `host` violates `nc`, or undefined when it satisfies it: it must match a permitted
 * subtree when there are any, and no excluded subtree.
 */
export function uriNameConstraintViolation(host: string, nc: UriNameConstraints): string | undefined {
  if (nc.permitted.length > 0 && !nc.permitted.some((b) => uriHostMatches(host, b))) {
    return `trust domain "${host}" matches no permitted URI subtree (${nc.permitted.map((b) => JSON.stringify(b)).join(', ')})`;
  }
  const excluded = nc.excluded.find((b) => uriHostMatches(host, b));
  return excluded === undefined ? undefined : `trust domain "${host}" matches excluded URI subtree ${JSON.stringify(excluded)}`;
}
