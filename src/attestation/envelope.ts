/**
 * The evidence envelope: how an outbound sidecar carries attestation evidence to its peer.
 *
 * Wire format v1 (HTTP header `attest-evidence`): base64url (no padding) of a UTF-8 JSON
 * object shaped as a RATS Conceptual Message Wrapper collection (draft-ietf-rats-msg-wrap):
 *
 *   { "__cmwc_t": "tag:attest-sidecar,2026:evidence/v1",
 *     "type":     ["text/plain", "<base64url of the evidence type, e.g. sev-snp>"],
 *     "<part>":   ["<media type>", "<base64url of the part's bytes>"], ... }
 *
 * Each part is a CMW record `[media-type, value]`. Which parts a type carries, and their
 * media types, are fixed by each evidence kind's part table (kinds.ts); unknown labels, wrong media types, duplicate members
 * (any JSON object member named twice), missing required parts, invalid UTF-8, non-canonical
 * base64url and oversized values are all refused.
 */
import { parseStrictJson } from '../lib/strict-json.js';
import { PARTS, type EvidenceType } from './kinds.js';
import { AttestationError } from './types.js';

export const COLLECTION_TYPE = 'tag:attest-sidecar,2026:evidence/v1';
/** Upper bound for the header value (Node's default header limit is 16 KiB in total). */
export const MAX_ENVELOPE_CHARS = 14 * 1024;

export interface Evidence {
  readonly type: EvidenceType;
  readonly parts: Readonly<Record<string, Buffer>>;
}

const B64URL = /^[A-Za-z0-9_-]*$/;
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function fromB64url(value: string, what: string): Buffer {
  if (!B64URL.test(value) || value.length % 4 === 1) {
    throw new AttestationError('evidence_malformed', `${what} is not base64url`);
  }
  const bytes = Buffer.from(value, 'base64url');
  // Canonical form only: one value, one encoding.
  if (bytes.toString('base64url') !== value) throw new AttestationError('evidence_malformed', `${what} is not canonical base64url`);
  return bytes;
}

export function encodeEvidence(collected: Evidence): string {
  const spec = PARTS.get(collected.type);
  if (!spec) throw new RangeError(`evidence type ${collected.type} is not known`);
  const out: Record<string, unknown> = { __cmwc_t: COLLECTION_TYPE, type: ['text/plain', Buffer.from(collected.type).toString('base64url')] };
  for (const [label, bytes] of Object.entries(collected.parts)) {
    const partSpec = Object.hasOwn(spec, label) ? spec[label] : undefined;
    if (!partSpec) throw new RangeError(`evidence type ${collected.type} has no part '${label}'`);
    out[label] = [partSpec.mediaType, bytes.toString('base64url')];
  }
  for (const [label, s] of Object.entries(spec)) {
    if (s.required && !Object.hasOwn(collected.parts, label)) throw new RangeError(`evidence type ${collected.type} needs part '${label}'`);
  }
  const text = Buffer.from(JSON.stringify(out), 'utf8').toString('base64url');
  if (text.length > MAX_ENVELOPE_CHARS) throw new RangeError(`evidence envelope is ${text.length} characters, over ${MAX_ENVELOPE_CHARS}`);
  return text;
}

export function decodeEvidence(header: string): Evidence {
  if (header.length > MAX_ENVELOPE_CHARS) {
    throw new AttestationError('evidence_malformed', `evidence header is ${header.length} characters, over ${MAX_ENVELOPE_CHARS}`);
  }
  let doc: unknown;
  try {
    doc = parseStrictJson(utf8.decode(fromB64url(header, 'evidence header')));
  } catch (err) {
    if (err instanceof AttestationError) throw err;
    throw new AttestationError('evidence_malformed', `evidence header is not strict JSON: ${(err as Error).message}`);
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new AttestationError('evidence_malformed', 'evidence envelope must be a JSON object (CMW collection)');
  }
  const fields = doc as Record<string, unknown>;
  if (fields.__cmwc_t !== COLLECTION_TYPE) {
    throw new AttestationError('evidence_unsupported', `evidence envelope type ${JSON.stringify(fields.__cmwc_t)} is not ${COLLECTION_TYPE}`);
  }
  const typeRec = record(fields.type, 'type');
  if (typeRec[0] !== 'text/plain') throw new AttestationError('evidence_malformed', "evidence 'type' must be a text/plain record");
  const type = fromB64url(typeRec[1], "evidence 'type'").toString('utf8') as EvidenceType;
  const spec = PARTS.get(type);
  if (!spec) throw new AttestationError('evidence_unsupported', `evidence type ${JSON.stringify(type)} is not supported`);
  const parts: Record<string, Buffer> = Object.create(null);
  for (const [label, value] of Object.entries(fields)) {
    if (label === '__cmwc_t' || label === 'type') continue;
    const partSpec = Object.prototype.hasOwnProperty.call(spec, label) ? spec[label] : undefined;
    if (!partSpec) throw new AttestationError('evidence_malformed', `evidence type ${type} has no part '${label}'`);
    const [mediaType, b64] = record(value, label);
    if (mediaType !== partSpec.mediaType) {
      throw new AttestationError('evidence_malformed', `evidence part '${label}' has media type ${JSON.stringify(mediaType)}, expected ${partSpec.mediaType}`);
    }
    const bytes = fromB64url(b64, `evidence part '${label}'`);
    if (bytes.length === 0 || bytes.length > partSpec.maxBytes) {
      throw new AttestationError('evidence_malformed', `evidence part '${label}' is ${bytes.length} bytes (1..${partSpec.maxBytes} allowed)`);
    }
    parts[label] = bytes;
  }
  for (const [label, s] of Object.entries(spec)) {
    if (s.required && !Object.hasOwn(parts, label)) throw new AttestationError('evidence_malformed', `evidence type ${type} is missing part '${label}'`);
  }
  return { type, parts };
}

function record(value: unknown, label: string): [string, string] {
  if (!Array.isArray(value) || value.length !== 2 || typeof value[0] !== 'string' || typeof value[1] !== 'string') {
    throw new AttestationError('evidence_malformed', `evidence part '${label}' must be a CMW record [media-type, base64url]`);
  }
  return [value[0], value[1]];
}
