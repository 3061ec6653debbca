/**
 * SEV-SNP report verification: report -> signing certificate (VCEK/VLEK) -> AMD anchors.
 *
 * Order matters for the reason codes: everything the signature covers is checked for meaning
 * only after the signature verified, so a tampered report is reported as signature_invalid
 * rather than as whatever the flipped bit happens to mean.
 */
import { verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { AttestationError, hex } from '../types.js';
import { chainNotAfter, verifyEndorsementChain, type SnpTrustAnchors } from './anchors.js';
import { findCert, parseSnpCertTable } from './cert-table.js';
import { parseSnpEndorsementCert, type SnpEndorsementCert } from './certs.js';
import { reportClaims, type SnpClaims } from './claims.js';
import { parseSnpReport, type SnpReport } from './report.js';
import { decodeTcb, productFromCpuid, resolveProduct, tcbComponents, type SnpProduct } from './tcb.js';

export interface SnpVerifyRefs {
  anchors: SnpTrustAnchors;
  /** The signing certificate (VCEK or VLEK), DER or PEM. Takes precedence over certTable. */
  vcek?: Uint8Array | string;
  /** The extended-report certificate table (configfs-tsm auxblob). */
  certTable?: Uint8Array;
  /** Pin the product; a report or certificate that says otherwise is refused. */
  product?: SnpProduct;
}

/**
 * Verifies an SEV-SNP attestation report at time `now` and returns its claims.
 * Throws AttestationError: evidence_malformed / evidence_unsupported (parse), collateral_missing
 * (no signing certificate), chain_invalid / collateral_expired (certificate chain),
 * signature_invalid (report signature), tcb_mismatch (product, TCB or chip id differ from what
 * the certificate certifies).
 */
export function verifySnpReport(report: Uint8Array, refs: SnpVerifyRefs, now: Date): SnpClaims {
  const r = parseSnpReport(report);
  const cert = signingCert(r, refs);

  // The chain is chosen by the certificate's own product (pinned product must agree); the
  // report's CPUID is compared after the signature, since it is signed data.
  const product = resolveProduct({ configured: refs.product, certificate: cert.product });
  verifyEndorsementChain(cert, refs.anchors, product, now);
  verifyReportSignature(r, cert);

  if (r.cpuid) resolveProduct({ report: productFromCpuid(r.cpuid), certificate: product });
  checkTcbAndChip(r, cert, product);

  return {
    ...reportClaims(r, product),
    product,
    cert: { not_after: chainNotAfter(cert, refs.anchors, product).toISOString() },
  };
}

/**
 * Parsed signing certificates by their exact bytes: ASN.1 parsing and X509Certificate
 * construction cost several times the report's signature check, and a peer presents the same
 * VCEK with every piece of evidence. Bounded; certificates are public data.
 */
const certCache = new Map<string, SnpEndorsementCert>();

function parseCached(input: Uint8Array | string): SnpEndorsementCert {
  const key = typeof input === 'string' ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('latin1');
  let cert = certCache.get(key);
  if (!cert) {
    cert = parseSnpEndorsementCert(input);
    if (certCache.size >= 64) certCache.delete(certCache.keys().next().value!);
    certCache.set(key, cert);
  }
  return cert;
}

function signingCert(r: SnpReport, refs: SnpVerifyRefs): SnpEndorsementCert {
  const want = r.signingKey.toUpperCase();
  let cert: SnpEndorsementCert | undefined;
  if (refs.vcek !== undefined) {
    cert = parseCached(refs.vcek);
  } else if (refs.certTable !== undefined) {
    const der = findCert(parseSnpCertTable(refs.certTable), r.signingKey);
    if (der) cert = parseCached(der);
  }
  if (!cert) {
    throw new AttestationError('collateral_missing', `no ${want} certificate to verify the SEV-SNP report with`);
  }
  if (cert.kind !== r.signingKey) {
    throw new AttestationError(
      'collateral_missing',
      `the report is signed by a ${want} but the supplied certificate is a ${cert.kind.toUpperCase()}`,
    );
  }
  return cert;
}

/**
 * Public keys of recently used signing certificates, by certificate fingerprint: extracting
 * the key from the certificate costs more than the lookup. Bounded; keys are public data.
 */
const keyCache = new Map<string, KeyObject>();

function verifyReportSignature(r: SnpReport, cert: SnpEndorsementCert): void {
  let key = keyCache.get(cert.fingerprint);
  if (!key) {
    key = cert.x509.publicKey;
    const details = key.asymmetricKeyDetails;
    if (key.asymmetricKeyType !== 'ec' || details?.namedCurve !== 'secp384r1') {
      throw new AttestationError('chain_invalid', `${cert.kind.toUpperCase()} key is not ECDSA P-384`);
    }
    if (keyCache.size >= 64) keyCache.delete(keyCache.keys().next().value!);
    keyCache.set(cert.fingerprint, key);
  }
  const ok = cryptoVerify('sha384', r.signedBytes, { key, dsaEncoding: 'ieee-p1363' }, r.signatureP1363);
  if (!ok) {
    throw new AttestationError(
      'signature_invalid',
      `SEV-SNP report signature does not verify with the ${cert.kind.toUpperCase()}`,
    );
  }
}

/** REPORTED_TCB must equal the certificate's SPLs; a VCEK's hwID must equal CHIP_ID. */
function checkTcbAndChip(r: SnpReport, cert: SnpEndorsementCert, product: SnpProduct): void {
  const reported = decodeTcb(r.reportedTcb, product);
  for (const c of tcbComponents(product)) {
    const certified = cert.tcb[c];
    if (reported[c] !== certified) {
      throw new AttestationError(
        'tcb_mismatch',
        `reported_tcb ${c} ${reported[c]} differs from the ${cert.kind.toUpperCase()} ${c} SPL ${certified}`,
      );
    }
  }
  if (cert.kind === 'vcek') {
    const hwId = cert.hwId!;
    // Turin VCEKs certify only the first 8 bytes of the chip id.
    const chip = product === 'Turin' ? r.chipId.subarray(0, 8) : r.chipId;
    if (!Buffer.from(chip).equals(Buffer.from(hwId))) {
      const masked = r.maskChipKey ? ' (the report has MASK_CHIP_KEY set)' : '';
      throw new AttestationError(
        'tcb_mismatch',
        `chip_id ${hex(chip)} differs from the VCEK hwID ${hex(hwId)}${masked}`,
      );
    }
  }
}
