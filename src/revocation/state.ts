/**
 * Revocation snapshots. A `RevocationState` is immutable: the store builds a new one on every
 * change and swaps it in, so the request path reads it without locks and `isRevoked` stays one
 * field check plus one Map lookup (it runs on every inbound and outbound request).
 *
 * IDs are compared as exact strings: they are validated with the SPIFFE ID parser on the way
 * in, and the parser only accepts canonical IDs, so one identity has one spelling.
 */
import { SidecarError } from '../errors.js';
import { parseSpiffeId } from '../spiffe/id.js';

/** The `spiffeId` of a revoke-all ("killall") entry. */
export const REVOKE_ALL = '*';

/** Longest accepted `reason` / `by`: enough for a ticket reference, not a place for documents. */
export const MAX_REASON_LENGTH = 1024;
export const MAX_PRINCIPAL_LENGTH = 2100;

export type RevocationSource = 'local' | 'shared';

export interface RevocationEntry {
  /** A canonical SPIFFE ID, or '*' for "everyone". */
  readonly spiffeId: string;
  readonly reason: string;
  /** ISO 8601 time of the revocation. */
  readonly at: string;
  /** Who revoked: 'token', an admin SPIFFE ID, or 'shared:<file>'. */
  readonly by: string;
  readonly source: RevocationSource;
}

/** One list of revocations (the local list, or one shared file). */
export interface RevocationList {
  readonly all: RevocationEntry | undefined;
  readonly byId: ReadonlyMap<string, RevocationEntry>;
}

export const EMPTY_LIST: RevocationList = Object.freeze({ all: undefined, byId: new Map<string, RevocationEntry>() });

export class RevocationState {
  /** Increases by one on every effective change (1 after opening). */
  readonly version: number;
  /** Set when every peer is revoked. */
  readonly all: RevocationEntry | undefined;
  readonly byId: ReadonlyMap<string, RevocationEntry>;

  private constructor(version: number, all: RevocationEntry | undefined, byId: ReadonlyMap<string, RevocationEntry>) {
    this.version = version;
    this.all = all;
    this.byId = byId;
  }

  static empty(version = 0): RevocationState {
    return new RevocationState(version, undefined, new Map());
  }

  /**
   * The union of `lists`. When several lists revoke the same ID the first one's entry is shown
   * (callers pass the local list first, then the shared files in configured order).
   */
  static merge(version: number, lists: readonly RevocationList[]): RevocationState {
    let all: RevocationEntry | undefined;
    const byId = new Map<string, RevocationEntry>();
    for (const list of lists) {
      all ??= list.all;
      for (const [id, entry] of list.byId) if (!byId.has(id)) byId.set(id, entry);
    }
    return new RevocationState(version, all, byId);
  }

  /** The entry that revokes `spiffeId` (the revoke-all entry first), or undefined. */
  isRevoked(spiffeId: string): RevocationEntry | undefined {
    return this.all ?? this.byId.get(spiffeId);
  }

  /** Number of per-ID entries (the revoke-all entry not counted). */
  get size(): number {
    return this.byId.size;
  }

  /** Every entry, revoke-all first, then per ID in insertion order (for the admin API). */
  entries(): RevocationEntry[] {
    return this.all ? [this.all, ...this.byId.values()] : [...this.byId.values()];
  }

  toJSON(): { version: number; all: RevocationEntry | null; revoked: RevocationEntry[] } {
    return { version: this.version, all: this.all ?? null, revoked: [...this.byId.values()] };
  }
}

/** IDs revoked in `next` that were not in `prev` ('*' when revoke-all was switched on). */
export function newlyRevoked(prev: RevocationState, next: RevocationState): string[] {
  const out: string[] = [];
  if (next.all && !prev.all) out.push(REVOKE_ALL);
  for (const id of next.byId.keys()) if (!prev.byId.has(id)) out.push(id);
  return out;
}

/** Same entries with the same content (used to skip no-op reloads). */
export function sameList(a: RevocationList, b: RevocationList): boolean {
  if (!sameEntry(a.all, b.all) || a.byId.size !== b.byId.size) return false;
  for (const [id, entry] of a.byId) if (!sameEntry(entry, b.byId.get(id))) return false;
  return true;
}

function sameEntry(a: RevocationEntry | undefined, b: RevocationEntry | undefined): boolean {
  if (a === b) return true;
  if (!a || !b) return false;
  return a.spiffeId === b.spiffeId && a.reason === b.reason && a.at === b.at && a.by === b.by && a.source === b.source;
}

/** The canonical form of a SPIFFE ID to revoke; throws SpiffeIdError (reason `spiffe_id_invalid`). */
export function revocationId(input: string): string {
  return parseSpiffeId(input).toString();
}

/** Checks a free-text field (reason, principal); throws SidecarError('revocation_invalid'). */
export function checkText(what: string, value: unknown, max: number, allowEmpty: boolean): string {
  if (typeof value !== 'string') throw new SidecarError('revocation_invalid', `${what} must be a string`);
  if (!allowEmpty && value.trim() === '') throw new SidecarError('revocation_invalid', `${what} must not be empty`);
  if (value.length > max) throw new SidecarError('revocation_invalid', `${what} is longer than ${max} characters`);
  // Control characters have no business in an operator note and confuse terminals reading logs.
  if (/[\u0000-\u001f\u007f]/.test(value)) {
    throw new SidecarError('revocation_invalid', `${what} must not contain control characters`);
  }
  return value;
}

/** A timestamp as ISO 8601 UTC; throws when `value` is not a date. */
export function isoTime(value: string | number | Date): string {
  // Date() alone accepts almost anything ('1' is the year 2001); insist on an ISO 8601 shape.
  if (typeof value === 'string' && !ISO_TIME.test(value)) {
    throw new SidecarError('revocation_invalid', `not an ISO 8601 time: ${JSON.stringify(value.slice(0, 64))}`);
  }
  const date = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(date.getTime())) throw new SidecarError('revocation_invalid', `not a valid time: ${JSON.stringify(String(value))}`);
  return date.toISOString();
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;
