/**
 * `access_control` claims: `oid:1.2.3.4.5` (the peer's SVID leaf carries that X.509 extension)
 * or `oid:1.2.3.4.5=value` (and its value equals `value`: the decoded text of a DER string
 * value, otherwise the lower-case hex of the raw extnValue octets).
 *
 * Parsed once at policy compile time; matching is a map lookup and a string compare.
 */
import type { ParsedClaim, PeerExtension } from './types.js';

export type ClaimParse =
  | { ok: true; claim: ParsedClaim }
  /** `index`: offset in the claim text of the offending part (for a precise column). */
  | { ok: false; index: number; message: string };

const PREFIX = 'oid:';
const ARC = /^(?:0|[1-9][0-9]*)$/;
const CONTROL = /[\x00-\x1f\x7f]/;
const HEX = /^(?:[0-9a-f]{2})+$/;

export function parseClaim(text: string): ClaimParse {
  const fail = (index: number, message: string): ClaimParse => ({ ok: false, index, message });
  if (!text.startsWith(PREFIX)) {
    return fail(0, `must be 'oid:' followed by a dotted OID and optionally '=value' (e.g. 'oid:1.2.3.4.5'), got '${text}'`);
  }
  const eq = text.indexOf('=');
  const oid = eq < 0 ? text.slice(PREFIX.length) : text.slice(PREFIX.length, eq);
  if (oid === '') return fail(PREFIX.length, "missing OID after 'oid:' (e.g. 'oid:1.2.3.4.5')");
  const arcs = oid.split('.');
  let at = PREFIX.length;
  for (let i = 0; i < arcs.length; i++) {
    const arc = arcs[i]!;
    if (!ARC.test(arc)) {
      const what = arc === '' ? 'empty OID arc' : /^[0-9]+$/.test(arc) ? `OID arc '${arc}' has a leading zero` : `OID arc '${arc}' is not a number`;
      return fail(at, what);
    }
    at += arc.length + 1;
  }
  if (arcs.length < 2) return fail(PREFIX.length, `an OID has at least two arcs, got '${oid}'`);
  const first = Number(arcs[0]);
  if (first > 2) return fail(PREFIX.length, `the first OID arc is 0, 1 or 2, got ${arcs[0]}`);
  // Under arcs 0 and 1 the second arc is below 40 (X.660); under 2 any size is fine.
  if (first < 2 && (arcs[1]!.length > 2 || Number(arcs[1]) >= 40)) {
    return fail(PREFIX.length + arcs[0]!.length + 1, `under OID arc ${first} the second arc is below 40, got ${arcs[1]}`);
  }
  if (eq < 0) return { ok: true, claim: { oid } };
  const value = text.slice(eq + 1);
  if (value === '') return fail(eq, "empty value after '=' (drop the '=' to require only that the extension is present)");
  const control = CONTROL.exec(value);
  if (control) return fail(eq + 1 + control.index, 'control character in the claim value');
  const lower = value.toLowerCase();
  return { ok: true, claim: HEX.test(lower) ? { oid, value, valueHex: lower } : { oid, value } };
}

/** Whether a peer with these SVID extensions holds `claim`. No extensions: holds nothing. */
export function holdsClaim(claim: ParsedClaim, extensions: ReadonlyMap<string, PeerExtension> | undefined): boolean {
  const ext = extensions?.get(claim.oid);
  if (ext === undefined) return false;
  if (claim.value === undefined) return true;
  return ext.text !== undefined ? ext.text === claim.value : ext.hex === claim.valueHex;
}
