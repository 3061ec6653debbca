/**
 * On-disk formats of the file ledger, as pure functions over bytes.
 *
 * Journal (`ledger.<generation>.journal`, append-only): one record per line,
 *   `{"k":<key>,"d":<delta micro-dollars>,"t":<ms>}` TAB `<crc32 of the JSON bytes, 8 hex>` LF.
 * The checksum tells a record torn by a crash (only ever the last one) from a complete one.
 *
 * Snapshot (`ledger.snapshot`, replaced atomically): `{"version":1,"journal":<generation>,"totals":{key: micros}}`;
 * the journal of that generation applies on top of it, older journals are leftovers.
 */
import { crc32 } from 'node:zlib';
import { SidecarError } from '../errors.js';
import { MAX_KEY_LENGTH } from './store.js';

export interface JournalRecord {
  /** Ledger key. */
  k: string;
  /** Delta in micro-dollars (negative for refunds). */
  d: number;
  /** When it was recorded (ms since epoch); informational. */
  t: number;
}

export interface JournalReplay {
  records: JournalRecord[];
  /** Length of the valid prefix: the file is truncated to this when a torn tail is dropped. */
  goodBytes: number;
  /** Bytes of the dropped torn last record (0 when the journal ended cleanly). */
  tornBytes: number;
  /** 1-based line number of the torn record, when there was one. */
  tornLine?: number;
}

const TAB = 0x09;
const LF = 0x0a;

export function encodeRecord(rec: JournalRecord): string {
  const json = JSON.stringify({ k: rec.k, d: rec.d, t: rec.t });
  return `${json}\t${crcHex(Buffer.from(json, 'utf8'))}\n`;
}

/**
 * Parses a whole journal. A last record without its newline or with a bad checksum is torn (a
 * crash mid-append): it is reported, not returned. A bad record anywhere else is corruption and
 * throws SidecarError('budget_ledger_corrupt') naming file and line: dropping it would silently
 * forget committed spend.
 */
export function replayJournal(data: Uint8Array, file: string): JournalReplay {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const records: JournalRecord[] = [];
  let pos = 0;
  let line = 0;
  while (pos < buf.length) {
    line++;
    const nl = buf.indexOf(LF, pos);
    if (nl === -1) return { records, goodBytes: pos, tornBytes: buf.length - pos, tornLine: line };
    const decoded = decodeRecord(buf.subarray(pos, nl));
    if (typeof decoded === 'string') {
      if (nl + 1 === buf.length) return { records, goodBytes: pos, tornBytes: buf.length - pos, tornLine: line };
      throw new SidecarError(
        'budget_ledger_corrupt',
        `${file}:${line}: ${decoded}; a record before the last one is damaged, refusing to open the ledger`,
      );
    }
    records.push(decoded);
    pos = nl + 1;
  }
  return { records, goodBytes: pos, tornBytes: 0 };
}

/** One line without its LF: the record, or why it is not one. */
function decodeRecord(line: Buffer): JournalRecord | string {
  const tab = line.lastIndexOf(TAB);
  if (tab === -1) return 'record has no checksum';
  const json = line.subarray(0, tab);
  const sum = line.subarray(tab + 1).toString('latin1');
  if (!/^[0-9a-f]{8}$/.test(sum)) return 'record checksum is malformed';
  if (sum !== crcHex(json)) return 'record checksum mismatch';
  let value: unknown;
  try {
    value = JSON.parse(json.toString('utf8'));
  } catch {
    return 'record is not JSON';
  }
  if (typeof value !== 'object' || value === null) return 'record is not an object';
  const { k, d, t } = value as Record<string, unknown>;
  if (typeof k !== 'string' || k.length === 0 || k.length > MAX_KEY_LENGTH) return 'record key is invalid';
  if (typeof d !== 'number' || !Number.isSafeInteger(d)) return 'record delta is not an integer';
  if (typeof t !== 'number' || !Number.isFinite(t)) return 'record time is invalid';
  return { k, d, t };
}

function crcHex(data: Uint8Array): string {
  return crc32(data).toString(16).padStart(8, '0');
}

export interface LedgerSnapshot {
  generation: number;
  totals: Map<string, number>;
}

export function encodeSnapshot(generation: number, totals: Iterable<[string, number]>): string {
  const obj: Record<string, number> = Object.create(null) as Record<string, number>; // a '__proto__' key stays data
  for (const [k, v] of totals) obj[k] = v;
  return `${JSON.stringify({ version: 1, journal: generation, totals: obj })}\n`;
}

/** Parses and validates a snapshot; throws SidecarError('budget_ledger_corrupt'). */
export function parseSnapshot(text: string, file: string): LedgerSnapshot {
  const bad = (why: string) => new SidecarError('budget_ledger_corrupt', `${file}: ${why}; refusing to open the ledger`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw bad('snapshot is not JSON');
  }
  if (typeof value !== 'object' || value === null) throw bad('snapshot is not an object');
  const { version, journal, totals } = value as Record<string, unknown>;
  if (version !== 1) throw bad(`unsupported snapshot version ${JSON.stringify(version)}`);
  if (typeof journal !== 'number' || !Number.isSafeInteger(journal) || journal < 0) throw bad('snapshot journal generation is invalid');
  if (typeof totals !== 'object' || totals === null || Array.isArray(totals)) throw bad('snapshot totals are not an object');
  const map = new Map<string, number>();
  for (const [k, v] of Object.entries(totals)) {
    if (k.length === 0 || k.length > MAX_KEY_LENGTH) throw bad('snapshot has an invalid key');
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw bad(`snapshot total of ${JSON.stringify(k)} is not an integer`);
    map.set(k, v);
  }
  return { generation: journal, totals: map };
}

/** Adds `delta` to `key` in `totals`; throws if the sum leaves the safe-integer range. */
export function applyDelta(totals: Map<string, number>, key: string, delta: number): number {
  const next = (totals.get(key) ?? 0) + delta;
  if (!Number.isSafeInteger(next)) {
    throw new SidecarError('budget_ledger_corrupt', `budget total of ${JSON.stringify(key)} overflows`);
  }
  totals.set(key, next);
  return next;
}
