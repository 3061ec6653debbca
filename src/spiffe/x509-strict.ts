/**
 * Byte-level readings of the certificate fields where a lenient ASN.1 decoder gives a wrong
 * answer instead of an error: key usage (a long BIT STRING overflowed the number it was read
 * into), validity times (out-of-range fields rolled over into another date) and the
 * SKI/AKI/SAN values OpenSSL marks invalid. Each reader throws a plain Error naming what is
 * wrong; x509.ts wraps it as MALFORMED_CERTIFICATE. All linear in the input.
 */

interface Tlv {
  readonly tag: number;
  /** offset of the first content byte */
  readonly start: number;
  /** offset just past the content */
  readonly end: number;
}

/** The DER TLV at `offset` of `der` (definite, minimal length; within `limit`). */
export function readTlv(der: Uint8Array, offset: number, limit = der.length, what = 'DER element'): Tlv {
  if (offset + 2 > limit) throw new Error(`${what}: truncated`);
  const tag = der[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new Error(`${what}: multi-byte tags are not used here`);
  const first = der[offset + 1]!;
  let start = offset + 2;
  let length = first;
  if (first >= 0x80) {
    const n = first & 0x7f;
    if (n === 0 || n > 4) throw new Error(`${what}: unsupported length encoding`);
    if (start + n > limit) throw new Error(`${what}: truncated length`);
    if (der[start] === 0) throw new Error(`${what}: non-minimal length`);
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + der[start + i]!;
    if (length < 0x80) throw new Error(`${what}: non-minimal length`);
    start += n;
  }
  if (start + length > limit) throw new Error(`${what}: truncated`);
  return { tag, start, end: start + length };
}

/** The single TLV that `der` must be exactly (no trailing bytes), with the expected tag. */
export function exactTlv(der: Uint8Array, tag: number, what: string): Tlv {
  const tlv = readTlv(der, 0, der.length, what);
  if (tlv.tag !== tag) throw new Error(`${what}: expected tag 0x${tag.toString(16)}, got 0x${tlv.tag.toString(16)}`);
  if (tlv.end !== der.length) throw new Error(`${what}: trailing data`);
  return tlv;
}

const TAG_BIT_STRING = 0x03;
const TAG_OCTET_STRING = 0x04;
const TAG_SEQUENCE = 0x30;
const TAG_UTC_TIME = 0x17;
const TAG_GENERALIZED_TIME = 0x18;
/** KeyUsage names bits 0 (digitalSignature) .. 8 (decipherOnly): at most two content bytes. */
const KEY_USAGE_BITS = 9;

/**
 * KeyUsage bitmask (bit i of the BIT STRING -> 1 << i, the KeyUsageBit values), read bit by
 * bit. Refused: more than two content bytes, bits past decipherOnly, unused-bit counts over 7
 * or with set padding bits.
 */
export function keyUsageBits(extnValue: Uint8Array): number {
  const { start, end } = exactTlv(extnValue, TAG_BIT_STRING, 'keyUsage');
  if (end === start) throw new Error('keyUsage: empty BIT STRING');
  const unused = extnValue[start]!;
  const content = extnValue.subarray(start + 1, end);
  if (unused > 7 || (content.length === 0 && unused !== 0)) throw new Error(`keyUsage: ${unused} unused bits is invalid`);
  if (content.length > 2) throw new Error(`keyUsage: BIT STRING of ${content.length} bytes (KeyUsage has ${KEY_USAGE_BITS} bits)`);
  if (content.length > 0 && (content[content.length - 1]! & ((1 << unused) - 1)) !== 0) {
    throw new Error('keyUsage: padding bits are set');
  }
  let bits = 0;
  for (let i = 0; i < content.length * 8; i++) {
    if (((content[i >> 3]! >> (7 - (i & 7))) & 1) === 0) continue;
    if (i >= KEY_USAGE_BITS) throw new Error(`keyUsage: undefined bit ${i} is set`);
    bits |= 1 << i;
  }
  return bits;
}

/** SubjectKeyIdentifier: a non-empty OCTET STRING. */
export function checkSubjectKeyIdentifier(extnValue: Uint8Array): void {
  const { start, end } = exactTlv(extnValue, TAG_OCTET_STRING, 'subjectKeyIdentifier');
  if (end === start) throw new Error('subjectKeyIdentifier: empty');
}

/** AuthorityKeyIdentifier: a SEQUENCE; an empty one, or an empty keyIdentifier [0], is refused. */
export function checkAuthorityKeyIdentifier(extnValue: Uint8Array): void {
  const { start, end } = exactTlv(extnValue, TAG_SEQUENCE, 'authorityKeyIdentifier');
  if (end === start) throw new Error('authorityKeyIdentifier: empty');
  const first = readTlv(extnValue, start, end, 'authorityKeyIdentifier');
  if (first.tag === 0x80 && first.end === first.start) throw new Error('authorityKeyIdentifier: empty keyIdentifier');
}

/** GeneralNames: a non-empty SEQUENCE of well-formed names; URI names (tag [6]) non-empty IA5 (7-bit). */
export function checkSubjectAltName(extnValue: Uint8Array): void {
  const { start, end } = exactTlv(extnValue, TAG_SEQUENCE, 'subjectAltName');
  if (end === start) throw new Error('subjectAltName: no names');
  for (let at = start; at < end; ) {
    const name = readTlv(extnValue, at, end, 'subjectAltName entry');
    if (name.tag === 0x86) {
      if (name.end === name.start) throw new Error('subjectAltName: empty URI');
      for (let i = name.start; i < name.end; i++) {
        if (extnValue[i]! > 0x7f) throw new Error('subjectAltName: URI is not an IA5String');
      }
    }
    at = name.end;
  }
}

const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * A validity time (RFC 5280 4.1.2.5: UTCTime YYMMDDHHMMSSZ or GeneralizedTime
 * YYYYMMDDHHMMSSZ) in epoch ms. Every field must be in range: a decoder that lets month 13
 * roll over into the next year turns a malformed certificate into a valid one.
 */
function readTime(der: Uint8Array, tlv: Tlv, what: string): number {
  const digitsBeforeZ = tlv.tag === TAG_UTC_TIME ? 12 : tlv.tag === TAG_GENERALIZED_TIME ? 14 : -1;
  if (digitsBeforeZ < 0) throw new Error(`${what}: not a UTCTime or GeneralizedTime`);
  const text = Buffer.from(der.subarray(tlv.start, tlv.end)).toString('latin1');
  if (text.length !== digitsBeforeZ + 1 || text[digitsBeforeZ] !== 'Z' || !/^[0-9]+$/.test(text.slice(0, digitsBeforeZ))) {
    throw new Error(`${what}: ${JSON.stringify(text)} is not ${digitsBeforeZ === 12 ? 'YYMMDDHHMMSSZ' : 'YYYYMMDDHHMMSSZ'}`);
  }
  const yearDigits = digitsBeforeZ - 10;
  const field = (i: number) => Number(text.slice(yearDigits + 2 * i, yearDigits + 2 * i + 2));
  let year = Number(text.slice(0, yearDigits));
  if (yearDigits === 2) year += year >= 50 ? 1900 : 2000;
  const [month, day, hour, minute, second] = [field(0), field(1), field(2), field(3), field(4)];
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const monthDays = month === 2 && !leap ? 28 : DAYS_IN_MONTH[month - 1];
  if (monthDays === undefined || day < 1 || day > monthDays || hour > 23 || minute > 59 || second > 59) {
    throw new Error(`${what}: ${JSON.stringify(text)} has a field out of range`);
  }
  return Date.UTC(year, month - 1, day, hour, minute, second);
}

/** notBefore / notAfter of a DER certificate, read from the bytes (see readTime). */
export function validityMs(certDer: Uint8Array): { notBeforeMs: number; notAfterMs: number } {
  const cert = exactTlv(certDer, TAG_SEQUENCE, 'certificate');
  const tbs = readTlv(certDer, cert.start, cert.end, 'tbsCertificate');
  let at = tbs.start;
  const next = (what: string) => {
    const tlv = readTlv(certDer, at, tbs.end, what);
    at = tlv.end;
    return tlv;
  };
  let field = next('tbsCertificate field');
  if (field.tag === 0xa0) field = next('serialNumber'); // explicit version
  next('signature'); // after serialNumber
  next('issuer');
  const validity = next('validity');
  if (validity.tag !== TAG_SEQUENCE) throw new Error('validity: not a SEQUENCE');
  const notBefore = readTlv(certDer, validity.start, validity.end, 'notBefore');
  const notAfter = readTlv(certDer, notBefore.end, validity.end, 'notAfter');
  if (notAfter.end !== validity.end) throw new Error('validity: trailing data');
  return { notBeforeMs: readTime(certDer, notBefore, 'notBefore'), notAfterMs: readTime(certDer, notAfter, 'notAfter') };
}
