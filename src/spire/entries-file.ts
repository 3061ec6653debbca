/**
 * The file `kill --spire-server-socket` saves an agent's registration entries to before it deletes
 * them, and `restore` re-creates them from: JSON, 0600, replaced atomically. It holds the full
 * Entry messages (selectors, parent, TTLs, hint, federates_with, DNS names, admin/downstream,
 * expiry, store_svid) so that restore registers exactly what was there, under the same IDs.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import path from 'node:path';
import { devStateDir } from '../mesh/paths.js';
import { SidecarError, errorMessage } from '../errors.js';
import { syncDir, writeFileAtomic } from '../lib/fs-atomic.js';
import type { SpiffeId } from '../spiffe/id.js';
import type { EntryMessage, SelectorMessage, SpiffeIdMessage } from './proto.js';

export const ENTRIES_FILE_FORMAT = 'attest-sidecar.spire-entries.v1';
/** Far above any real agent's entries; bounds what restore reads. */
const MAX_FILE_BYTES = 16 * 1024 * 1024;
const ENTRY_ID = /^[A-Za-z0-9._-]{0,255}$/;

export interface EntriesFile {
  format: typeof ENTRIES_FILE_FORMAT;
  spiffe_id: string;
  /** The server the entries came from (informational; restore uses --spire-server-socket). */
  server_socket: string;
  saved_at: string;
  entries: EntryMessage[];
}

/** Default location: <state dir>/spire-entries/<readable part>-<hash>.json (one file per SPIFFE ID). */
export function defaultEntriesFile(id: SpiffeId, env: NodeJS.ProcessEnv = process.env): string {
  const text = id.toString();
  const readable = text.slice('spiffe://'.length).replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 100);
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 12);
  return path.join(devStateDir(env), 'spire-entries', `${readable}-${hash}.json`);
}

/** Earlier saved entries plus the listed ones (same ID: the listed one wins), in a stable order. */
export function mergeEntries(saved: readonly EntryMessage[], listed: readonly EntryMessage[]): EntryMessage[] {
  const byId = new Map<string, EntryMessage>();
  for (const e of saved) byId.set(e.id, e);
  for (const e of listed) byId.set(e.id, e);
  return [...byId.values()];
}

export async function writeEntriesFile(file: string, content: EntriesFile): Promise<void> {
  try {
    await writeFileAtomic(file, JSON.stringify(content, null, 2) + '\n', 0o600);
  } catch (err) {
    throw new SidecarError('spire_entries_file_write_failed', `cannot save the entries to ${file}: ${errorMessage(err)}`, { cause: err });
  }
}

export async function removeEntriesFile(file: string): Promise<void> {
  await unlink(file);
  await syncDir(path.dirname(file));
}

/** The saved entries of `id`, or undefined when there is no file. Throws `spire_entries_file_invalid`. */
export async function readEntriesFile(file: string, id: SpiffeId): Promise<EntriesFile | undefined> {
  let text: string;
  try {
    const fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new Error('not a regular file');
      if (st.size > MAX_FILE_BYTES) throw new Error(`larger than ${MAX_FILE_BYTES} bytes`);
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw invalid(file, errorMessage(err));
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalid(file, `not JSON: ${errorMessage(err)}`);
  }
  return parseEntriesFile(doc, file, id);
}

function invalid(file: string, why: string): SidecarError {
  return new SidecarError('spire_entries_file_invalid', `${file}: ${why}`);
}

/** Checks every field's type; every entry must be `id`'s (restore never registers another identity). */
export function parseEntriesFile(doc: unknown, file: string, id: SpiffeId): EntriesFile {
  const obj = record(doc, file, 'the file');
  if (obj.format !== ENTRIES_FILE_FORMAT) throw invalid(file, `format is not ${JSON.stringify(ENTRIES_FILE_FORMAT)}`);
  if (obj.spiffe_id !== id.toString()) throw invalid(file, `saved for ${JSON.stringify(obj.spiffe_id)}, not ${id.toString()}`);
  if (!Array.isArray(obj.entries)) throw invalid(file, "'entries' must be a list");
  const entries = obj.entries.map((e, i) => parseEntry(e, file, `entries[${i}]`, id));
  return {
    format: ENTRIES_FILE_FORMAT,
    spiffe_id: id.toString(),
    server_socket: typeof obj.server_socket === 'string' ? obj.server_socket : '',
    saved_at: typeof obj.saved_at === 'string' ? obj.saved_at : '',
    entries,
  };
}

function record(v: unknown, file: string, what: string): Record<string, unknown> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw invalid(file, `${what} must be an object`);
  return v as Record<string, unknown>;
}

function parseEntry(v: unknown, file: string, where: string, id: SpiffeId): EntryMessage {
  const e = record(v, file, where);
  const str = (k: string, dflt = '') => field(e[k], dflt, (x): x is string => typeof x === 'string', file, `${where}.${k}`, 'a string');
  const bool = (k: string) => field(e[k], false, (x): x is boolean => typeof x === 'boolean', file, `${where}.${k}`, 'true or false');
  const int32 = (k: string) => field(e[k], 0, (x): x is number => Number.isInteger(x) && (x as number) >= -(2 ** 31) && (x as number) < 2 ** 31, file, `${where}.${k}`, 'a 32-bit integer');
  const int64 = (k: string) => field(e[k], '0', (x): x is string => typeof x === 'string' && /^-?\d{1,19}$/.test(x), file, `${where}.${k}`, 'an integer as a decimal string');
  const strings = (k: string) => field(e[k], [] as string[], (x): x is string[] => Array.isArray(x) && x.every((s) => typeof s === 'string'), file, `${where}.${k}`, 'a list of strings');
  const entryId = str('id');
  if (!ENTRY_ID.test(entryId)) throw invalid(file, `${where}.id must be up to 255 of A-Z a-z 0-9 . _ -`);
  const spiffeId = spiffeIdMessage(e.spiffe_id, file, `${where}.spiffe_id`);
  if (spiffeId === null || spiffeId.trust_domain !== id.trustDomain.name || spiffeId.path !== id.path) {
    throw invalid(file, `${where}.spiffe_id is not ${id.toString()}`);
  }
  const selectors = field(e.selectors, [] as SelectorMessage[], isSelectors, file, `${where}.selectors`, 'a list of {type, value}');
  if (selectors.length === 0) throw invalid(file, `${where}.selectors is empty`);
  return {
    id: entryId,
    spiffe_id: spiffeId,
    parent_id: spiffeIdMessage(e.parent_id, file, `${where}.parent_id`),
    selectors: selectors.map((s) => ({ type: s.type, value: s.value })),
    x509_svid_ttl: int32('x509_svid_ttl'),
    federates_with: strings('federates_with'),
    admin: bool('admin'),
    downstream: bool('downstream'),
    expires_at: int64('expires_at'),
    dns_names: strings('dns_names'),
    revision_number: int64('revision_number'),
    store_svid: bool('store_svid'),
    jwt_svid_ttl: int32('jwt_svid_ttl'),
    hint: str('hint'),
    created_at: int64('created_at'),
  };
}

function field<T>(v: unknown, dflt: T, ok: (x: unknown) => x is T, file: string, where: string, what: string): T {
  if (v === undefined) return dflt;
  if (!ok(v)) throw invalid(file, `${where} must be ${what}`);
  return v;
}

function isSelectors(v: unknown): v is SelectorMessage[] {
  return Array.isArray(v) && v.every((s) => s && typeof s === 'object' && typeof (s as SelectorMessage).type === 'string' && typeof (s as SelectorMessage).value === 'string');
}

function spiffeIdMessage(v: unknown, file: string, where: string): SpiffeIdMessage | null {
  if (v === null || v === undefined) return null;
  const m = record(v, file, where);
  if (typeof m.trust_domain !== 'string' || typeof m.path !== 'string') throw invalid(file, `${where} must be {trust_domain, path}`);
  return { trust_domain: m.trust_domain, path: m.path };
}

/** `spiffe://td/path` of an Entry's SPIFFE ID message (for output). */
export function spiffeIdText(m: SpiffeIdMessage | null): string {
  return m ? `spiffe://${m.trust_domain}${m.path}` : '(none)';
}
