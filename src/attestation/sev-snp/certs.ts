/**
 * VCEK / VLEK certificates: parsing and the AMD extensions (VCEK certificate spec, OIDs under
 * 1.3.6.1.4.1.3704.1). The signed-chain checks live in anchors.ts.
 *
 * Genuine AMD certificates have serial number 0 and RSA-PSS signatures: @peculiar/asn1-x509
 * (extensions) and node:crypto X509Certificate (names, validity, keys, signatures) both accept
 * them.
 */
import { X509Certificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate } from '@peculiar/asn1-x509';
import { AttestationError } from '../types.js';
import { exactTlv, validityMs } from '../../spiffe/x509-strict.js';
import { productFromName, type SnpProduct } from './tcb.js';

const AMD = '1.3.6.1.4.1.3704.1';
export const SNP_CERT_OIDS = {
  structVersion: `${AMD}.1`,
  productName: `${AMD}.2`,
  blSPL: `${AMD}.3.1`,
  teeSPL: `${AMD}.3.2`,
  snpSPL: `${AMD}.3.3`,
  spl4: `${AMD}.3.4`,
  spl5: `${AMD}.3.5`,
  spl6: `${AMD}.3.6`,
  spl7: `${AMD}.3.7`,
  ucodeSPL: `${AMD}.3.8`,
  fmcSPL: `${AMD}.3.9`,
  hwID: `${AMD}.4`,
  cspID: `${AMD}.5`,
} as const;

export type SnpKeyKind = 'vcek' | 'vlek';

export interface SnpCertTcb {
  bootloader: number;
  tee: number;
  snp: number;
  microcode: number;
  fmc?: number;
}

export interface SnpEndorsementCert {
  kind: SnpKeyKind;
  der: Uint8Array;
  x509: X509Certificate;
  /** SHA-256 of the DER, lower-case hex; the chain cache key. */
  fingerprint: string;
  structVersion?: number;
  productName: string;
  product: SnpProduct;
  tcb: SnpCertTcb;
  /** VCEK only: 64 bytes (Milan/Genoa) or 8 bytes (Turin). */
  hwId?: Uint8Array;
  /** VLEK only: the cloud provider the VLEK was issued to. */
  cspId?: string;
  issuerCn: string;
}

/**
 * Accepts DER bytes, PEM text, or PEM bytes. A PEM bundle (e.g. "VCEK, ASK, ARK") yields its
 * SEV-VCEK / SEV-VLEK certificate, else its first certificate.
 */
export function certDer(input: Uint8Array | string, what: string): Uint8Array {
  const text =
    typeof input === 'string' ? input : looksLikePem(input) ? Buffer.from(input).toString('latin1') : undefined;
  if (text === undefined) return input as Uint8Array;
  const blocks = [...text.matchAll(/-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----/g)].map(
    (m) => new Uint8Array(Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64')),
  );
  if (blocks.length === 0) throw new AttestationError('evidence_malformed', `${what}: no PEM certificate found`);
  const endorsement = blocks.find((der) => {
    try {
      return /^SEV-V(CEK|LEK)$/.test(commonName(new X509Certificate(der).subject));
    } catch {
      return false;
    }
  });
  return endorsement ?? blocks[0]!;
}

function looksLikePem(b: Uint8Array): boolean {
  return Buffer.from(b.subarray(0, 64)).toString('latin1').includes('-----BEGIN');
}

/** Parses a VCEK or VLEK (kind from the subject CN "SEV-VCEK" / "SEV-VLEK"). */
export function parseSnpEndorsementCert(input: Uint8Array | string): SnpEndorsementCert {
  const der = certDer(input, 'VCEK/VLEK certificate');
  let x509: X509Certificate;
  let asn: Certificate;
  try {
    // Exactly one DER certificate: the X.509 and ASN.1 decoders both ignore trailing bytes.
    exactTlv(der, 0x30, 'certificate');
    validityMs(der); // a malformed validity time makes the certificate malformed, not "always valid"
    x509 = new X509Certificate(der);
    asn = AsnConvert.parse(der, Certificate);
  } catch (err) {
    throw new AttestationError('evidence_malformed', `VCEK/VLEK certificate does not parse: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const subjectCn = commonName(x509.subject);
  const kind: SnpKeyKind | undefined =
    subjectCn === 'SEV-VCEK' ? 'vcek' : subjectCn === 'SEV-VLEK' ? 'vlek' : undefined;
  if (!kind) {
    throw new AttestationError('evidence_malformed', `certificate CN "${subjectCn}" is neither SEV-VCEK nor SEV-VLEK`);
  }
  const exts = new Map<string, Uint8Array>();
  for (const e of asn.tbsCertificate.extensions ?? []) {
    if (exts.has(e.extnID)) throw new AttestationError('evidence_malformed', `VCEK/VLEK certificate has a duplicate extension ${e.extnID}`);
    exts.set(e.extnID, new Uint8Array(e.extnValue.buffer));
  }
  const what = kind.toUpperCase();
  const int = (oid: string, name: string, required = true): number | undefined => {
    const v = exts.get(oid);
    if (!v) {
      if (required) throw new AttestationError('evidence_malformed', `${what} lacks the ${name} extension`);
      return undefined;
    }
    return derSmallInteger(v, `${what} ${name}`);
  };
  const productName = derString(exts.get(SNP_CERT_OIDS.productName), `${what} productName`);
  const product = productFromName(productName);
  const tcb: SnpCertTcb = {
    bootloader: int(SNP_CERT_OIDS.blSPL, 'blSPL')!,
    tee: int(SNP_CERT_OIDS.teeSPL, 'teeSPL')!,
    snp: int(SNP_CERT_OIDS.snpSPL, 'snpSPL')!,
    microcode: int(SNP_CERT_OIDS.ucodeSPL, 'ucodeSPL')!,
  };
  if (product === 'Turin') tcb.fmc = int(SNP_CERT_OIDS.fmcSPL, 'fmcSPL')!;

  const cert: SnpEndorsementCert = {
    kind,
    der,
    x509,
    fingerprint: x509.fingerprint256.replace(/:/g, '').toLowerCase(),
    productName,
    product,
    tcb,
    issuerCn: commonName(x509.issuer),
  };
  const structVersion = int(SNP_CERT_OIDS.structVersion, 'structVersion', false);
  if (structVersion !== undefined) cert.structVersion = structVersion;
  if (kind === 'vcek') {
    const raw = exts.get(SNP_CERT_OIDS.hwID);
    if (!raw) throw new AttestationError('evidence_malformed', 'VCEK lacks the hwID extension');
    cert.hwId = hwIdValue(raw, product === 'Turin' ? 8 : 64);
  } else {
    const csp = exts.get(SNP_CERT_OIDS.cspID);
    if (csp) cert.cspId = derString(csp, 'VLEK cspID');
  }
  return cert;
}

/**
 * hwID comes in two encodings in the wild: the raw chip id (AMD KDS certificates) or the raw
 * bytes wrapped in a DER OCTET STRING. The length tells them apart.
 */
export function hwIdValue(v: Uint8Array, size: number): Uint8Array {
  if (v.byteLength === size) return v;
  if (v.byteLength === size + 2 && v[0] === 0x04 && v[1] === size) return v.subarray(2);
  throw new AttestationError('evidence_malformed', `hwID extension has ${v.byteLength} bytes, expected ${size}`);
}

/** A DER INTEGER that fits in a JS number (SPL values are 0..255). */
function derSmallInteger(v: Uint8Array, what: string): number {
  if (v.byteLength < 3 || v[0] !== 0x02 || v[1] !== v.byteLength - 2 || v.byteLength > 8) {
    throw new AttestationError('evidence_malformed', `${what} is not a small DER INTEGER`);
  }
  if ((v[2]! & 0x80) !== 0) throw new AttestationError('evidence_malformed', `${what} is negative`);
  let n = 0;
  for (let i = 2; i < v.byteLength; i++) n = n * 256 + v[i]!;
  return n;
}

/** IA5String / UTF8String / PrintableString value. */
function derString(v: Uint8Array | undefined, what: string): string {
  if (!v) throw new AttestationError('evidence_malformed', `${what} extension is missing`);
  const tag = v[0];
  if ((tag !== 0x16 && tag !== 0x0c && tag !== 0x13) || v.byteLength < 2 || (v[1]! & 0x80) !== 0 || v[1] !== v.byteLength - 2) {
    throw new AttestationError('evidence_malformed', `${what} is not a short DER string`);
  }
  return Buffer.from(v.subarray(2)).toString('utf8');
}

/** The CN of a node:crypto distinguished name ("K=V" lines). */
export function commonName(dn: string): string {
  for (const line of dn.split('\n')) {
    if (line.startsWith('CN=')) return line.slice(3);
  }
  return '';
}
