/**
 * The local revocation list on disk: `{"version":1,"all":entry|null,"revoked":[entry...]}`,
 * entries `{spiffeId, reason, at, by}` in revocation order. Parsing is strict: this file decides
 * who is locked out, so anything unexpected refuses the whole file instead of guessing.
 */
import { SidecarError } from '../errors.js';
import {
  MAX_PRINCIPAL_LENGTH,
  MAX_REASON_LENGTH,
  REVOKE_ALL,
  checkText,
  isoTime,
  revocationId,
  type RevocationEntry,
  type RevocationList,
} from './state.js';

export const STATE_FILE_VERSION = 1;

const TOP_KEYS = ['version', 'all', 'revoked'];
const ENTRY_KEYS = ['spiffeId', 'reason', 'at', 'by', 'source'];

export function serializeLocalList(list: RevocationList): string {
  const plain = (e: RevocationEntry) => ({ spiffeId: e.spiffeId, reason: e.reason, at: e.at, by: e.by });
  const doc = {
    version: STATE_FILE_VERSION,
    all: list.all ? plain(list.all) : null,
    revoked: [...list.byId.values()].map(plain),
  };
  return `${JSON.stringify(doc, null, 1)}\n`;
}

/** Parses the state file's text; throws SidecarError('revocations_unreadable') naming `file`. */
export function parseLocalList(text: string, file: string): RevocationList {
  const bad = (why: string, cause?: unknown) =>
    new SidecarError('revocations_unreadable', `revocation state file ${file} ${why}`, cause ? { cause } : undefined);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw bad(`is not valid JSON (${err instanceof Error ? err.message : String(err)})`, err);
  }
  if (!isPlainObject(doc)) throw bad('must hold a JSON object');
  const unknown = Object.keys(doc).filter((k) => !TOP_KEYS.includes(k));
  if (unknown.length) throw bad(`has unknown keys: ${unknown.join(', ')}`);
  if (doc.version !== STATE_FILE_VERSION) throw bad(`has version ${JSON.stringify(doc.version)}; expected ${STATE_FILE_VERSION}`);

  let all: RevocationEntry | undefined;
  if (doc.all !== null && doc.all !== undefined) {
    all = parseEntry(doc.all, 'all', true, bad);
  }
  if (!Array.isArray(doc.revoked)) throw bad('"revoked" must be a list');
  const byId = new Map<string, RevocationEntry>();
  doc.revoked.forEach((raw: unknown, i: number) => {
    const entry = parseEntry(raw, `revoked[${i}]`, false, bad);
    if (byId.has(entry.spiffeId)) throw bad(`revoked[${i}]: ${entry.spiffeId} is listed twice`);
    byId.set(entry.spiffeId, entry);
  });
  return { all, byId };
}

function parseEntry(
  raw: unknown,
  where: string,
  isAll: boolean,
  bad: (why: string, cause?: unknown) => SidecarError,
): RevocationEntry {
  if (!isPlainObject(raw)) throw bad(`${where} must be an object`);
  const unknown = Object.keys(raw).filter((k) => !ENTRY_KEYS.includes(k));
  if (unknown.length) throw bad(`${where} has unknown keys: ${unknown.join(', ')}`);
  try {
    if (raw.source !== undefined && raw.source !== 'local') throw new Error('source must be "local"');
    let spiffeId: string;
    if (isAll) {
      if (raw.spiffeId !== REVOKE_ALL) throw new Error(`spiffeId must be "${REVOKE_ALL}"`);
      spiffeId = REVOKE_ALL;
    } else {
      if (typeof raw.spiffeId !== 'string') throw new Error('spiffeId must be a string');
      spiffeId = revocationId(raw.spiffeId);
      if (spiffeId !== raw.spiffeId) throw new Error(`spiffeId ${JSON.stringify(raw.spiffeId)} is not canonical`);
    }
    const reason = checkText('reason', raw.reason, MAX_REASON_LENGTH, true);
    const by = checkText('by', raw.by, MAX_PRINCIPAL_LENGTH, false);
    if (typeof raw.at !== 'string') throw new Error('at must be a string');
    const at = isoTime(raw.at);
    return Object.freeze({ spiffeId, reason, at, by, source: 'local' as const });
  } catch (err) {
    throw bad(`${where}: ${err instanceof Error ? err.message : String(err)}`, err);
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
