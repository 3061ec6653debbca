/**
 * The certificate table of the SNP extended guest request (GHCB spec, "SNP Extended Guest
 * Request"), which Linux also returns as the configfs-tsm `auxblob`:
 *
 *   entry[i] = { GUID (16 bytes), offset (u32 LE), length (u32 LE) }   24 bytes each
 *   an all-zero entry terminates the table; offsets are from the start of the table.
 *
 * GUID bytes are read in RFC 4122 order (as go-sev-guest and virtee/sev write them). Some hosts
 * write the EFI mixed-endian form; the known GUIDs are recognised in both forms (they are
 * distinct either way, and the certificates are verified regardless of how they were found).
 */
import { AttestationError } from '../types.js';

export const SNP_CERT_GUIDS = {
  vcek: '63da758d-e664-4564-adc5-f4b93be8accd',
  vlek: 'a8074bc2-a25a-483e-aae6-39c045a0b8a1',
  ask: '4ab7b379-bbac-4fe4-a02f-05aef327c782',
  ark: 'c0b406a4-a803-4952-9743-3fb6014cd0ae',
} as const;

export type SnpCertTableKind = keyof typeof SNP_CERT_GUIDS;

export interface SnpCertTableEntry {
  /** Canonical lower-case GUID string as read (RFC 4122 byte order). */
  guid: string;
  kind?: SnpCertTableKind;
  data: Uint8Array;
}

const ENTRY_SIZE = 24;
const MAX_ENTRIES = 64;

export function parseSnpCertTable(bytes: Uint8Array): SnpCertTableEntry[] {
  if (bytes.byteLength === 0) return [];
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headers: { guid: Uint8Array; offset: number; length: number }[] = [];
  let pos = 0;
  for (;;) {
    if (pos + ENTRY_SIZE > b.length) {
      throw new AttestationError('evidence_malformed', 'SEV-SNP certificate table: no terminating all-zero entry');
    }
    const guid = new Uint8Array(b.subarray(pos, pos + 16));
    const offset = b.readUInt32LE(pos + 16);
    const length = b.readUInt32LE(pos + 20);
    pos += ENTRY_SIZE;
    if (offset === 0 && length === 0 && guid.every((x) => x === 0)) break;
    if (headers.length >= MAX_ENTRIES) {
      throw new AttestationError('evidence_malformed', `SEV-SNP certificate table has more than ${MAX_ENTRIES} entries`);
    }
    headers.push({ guid, offset, length });
  }
  const seen = new Set<string>();
  return headers.map((h, i) => {
    if (h.offset < pos || h.offset + h.length > b.length) {
      throw new AttestationError(
        'evidence_malformed',
        `SEV-SNP certificate table entry ${i}: bytes ${h.offset}+${h.length} fall outside the data (header ${pos}, total ${b.length})`,
      );
    }
    const guid = guidString(h.guid);
    const kind = kindOf(h.guid);
    const key = kind ?? guid;
    if (seen.has(key)) throw new AttestationError('evidence_malformed', `SEV-SNP certificate table: duplicate ${key} entry`);
    seen.add(key);
    const entry: SnpCertTableEntry = { guid, data: new Uint8Array(b.subarray(h.offset, h.offset + h.length)) };
    if (kind) entry.kind = kind;
    return entry;
  });
}

/** Builds a table (RFC 4122 GUID bytes); used by tests and by tools that assemble evidence. */
export function buildSnpCertTable(entries: { guid: string; data: Uint8Array }[]): Uint8Array {
  const header = (entries.length + 1) * ENTRY_SIZE;
  const total = header + entries.reduce((n, e) => n + e.data.byteLength, 0);
  const out = Buffer.alloc(total);
  let cursor = header;
  entries.forEach((entry, i) => {
    Buffer.from(entry.guid.replace(/-/g, ''), 'hex').copy(out, i * ENTRY_SIZE);
    out.writeUInt32LE(cursor, i * ENTRY_SIZE + 16);
    out.writeUInt32LE(entry.data.byteLength, i * ENTRY_SIZE + 20);
    out.set(entry.data, cursor);
    cursor += entry.data.byteLength;
  });
  return new Uint8Array(out);
}

export function findCert(entries: SnpCertTableEntry[], kind: SnpCertTableKind): Uint8Array | undefined {
  return entries.find((e) => e.kind === kind)?.data;
}

function guidString(g: Uint8Array): string {
  const h = Buffer.from(g).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The EFI form stores the first three GUID fields little-endian. */
function swapEfi(g: Uint8Array): Uint8Array {
  const swapped = new Uint8Array(g);
  swapped.set([g[3]!, g[2]!, g[1]!, g[0]!, g[5]!, g[4]!, g[7]!, g[6]!], 0);
  return swapped;
}

function kindOf(g: Uint8Array): SnpCertTableKind | undefined {
  for (const form of [guidString(g), guidString(swapEfi(g))]) {
    const k = (Object.keys(SNP_CERT_GUIDS) as SnpCertTableKind[]).find((key) => SNP_CERT_GUIDS[key] === form);
    if (k) return k;
  }
  return undefined;
}
