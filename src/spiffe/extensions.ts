/**
 * The X.509 extensions of an SVID leaf as policy claims (`access_control` entries name them
 * as `oid:1.2.3` or `oid:1.2.3=value`).
 *
 * Each extension is exposed by OID with the lower-case hex of its extnValue octets and, when
 * those octets are exactly one DER UTF8String / IA5String / PrintableString, the decoded
 * text. Computed at handshake time and cached per certificate, never per request.
 */
import type { X509Certificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate } from '@peculiar/asn1-x509';
import { X509ParseError, perCertificate } from './x509.js';

export interface ExtensionClaim {
  /** Decoded text, when the value is a single DER UTF8String, IA5String or PrintableString. */
  readonly text?: string;
  /** Lower-case hex of the raw extnValue octets. */
  readonly hex: string;
}

export type ExtensionClaims = ReadonlyMap<string, ExtensionClaim>;

const TAG_UTF8_STRING = 0x0c;
const TAG_PRINTABLE_STRING = 0x13;
const TAG_IA5_STRING = 0x16;
const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * The text of `der` when it is exactly one DER UTF8String / IA5String / PrintableString
 * (definite, minimal length; no trailing bytes; valid for its string type); else undefined.
 */
export function derStringText(der: Uint8Array): string | undefined {
  if (der.length < 2) return undefined;
  const tag = der[0]!;
  if (tag !== TAG_UTF8_STRING && tag !== TAG_IA5_STRING && tag !== TAG_PRINTABLE_STRING) return undefined;
  let length: number;
  let header = 2;
  const first = der[1]!;
  if (first < 0x80) {
    length = first;
  } else {
    const n = first & 0x7f;
    if (n === 0 || n > 4 || der.length < 2 + n || der[2] === 0) return undefined;
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + der[2 + i]!;
    if (length < 0x80) return undefined; // non-minimal
    header += n;
  }
  if (header + length !== der.length) return undefined;
  const content = der.subarray(header);
  if (tag === TAG_UTF8_STRING) {
    try {
      return utf8.decode(content);
    } catch {
      return undefined;
    }
  }
  for (const b of content) if (b > 0x7f) return undefined;
  const text = Buffer.from(content).toString('latin1');
  return tag === TAG_PRINTABLE_STRING && !PRINTABLE.test(text) ? undefined : text;
}

/** Every extension of `cert`, by OID. Throws X509ParseError (MALFORMED_CERTIFICATE). Cached. */
export const svidExtensionClaims: (cert: X509Certificate) => ExtensionClaims = perCertificate((cert) => computeClaims(cert));

function computeClaims(cert: X509Certificate): ExtensionClaims {
  let asn: Certificate;
  try {
    asn = AsnConvert.parse(cert.raw, Certificate);
  } catch (err) {
    throw new X509ParseError('MALFORMED_CERTIFICATE', `malformed certificate: ${(err as Error).message}`, { cause: err });
  }
  const out = new Map<string, ExtensionClaim>();
  for (const ext of asn.tbsCertificate.extensions ?? []) {
    if (out.has(ext.extnID)) {
      throw new X509ParseError('MALFORMED_CERTIFICATE', `malformed certificate: duplicate extension ${ext.extnID}`);
    }
    const bytes = new Uint8Array(ext.extnValue.buffer);
    const text = derStringText(bytes);
    const hex = Buffer.from(bytes).toString('hex');
    out.set(ext.extnID, Object.freeze(text === undefined ? { hex } : { text, hex }));
  }
  return out;
}
