/**
 * Shared revocation files: one file (YAML or JSON) that several sidecars watch, so a single
 * edit reaches the whole mesh.
 *
 *   revoked:
 *     - spiffe_id: spiffe://example.org/agent/rogue
 *       reason: leaked key          # optional
 *       at: 2025-01-01T00:00:00Z    # optional; default: when this sidecar first saw the entry
 *   all: { reason: incident 42 }    # optional: revoke everyone
 *
 * An empty file is refused rather than read as "nobody revoked": a truncated write must not
 * un-revoke the mesh. `revoked: []` says "none" explicitly.
 */
import { type Node } from 'yaml';
import { ProblemsError, YamlReader, isEmptyDocument, type Field, type Problem } from '../lib/yaml-reader.js';
import { errorMessage } from '../errors.js';
import {
  MAX_REASON_LENGTH,
  REVOKE_ALL,
  checkText,
  isoTime,
  revocationId,
  type RevocationEntry,
  type RevocationList,
} from './state.js';

export const SHARED_DEFAULT_REASON = 'listed in a shared revocation file';

/**
 * Shared lists are parsed on a worker thread (src/lib/parse-worker.ts), so they may be larger
 * than config files: about 50,000 entries. Larger files are refused before parsing.
 */
export const MAX_SHARED_REVOCATION_BYTES = 4 * 1024 * 1024;

export interface ParseSharedOptions {
  /** Time for entries without `at` that `previous` does not know yet. */
  now: () => number;
  /** The last good content of the same file: entries without `at` keep their first-seen time. */
  previous?: RevocationList;
}

/** The data of a shared-list parse job: the file's text, and `now` as a number (it crosses a thread). */
export interface SharedListJob {
  text: string;
  file: string;
  now: number;
  previous: RevocationList | undefined;
}

/** The shared-list parse job (run on a worker thread by lib/parse-worker.ts). */
export function parseSharedListJob(job: SharedListJob): RevocationList {
  return parseSharedList(job.text, job.file, { now: () => job.now, ...(job.previous ? { previous: job.previous } : {}) });
}

/** Parses a shared file's text; throws ProblemsError (reason 'revocations_unreadable') with positions. */
export function parseSharedList(text: string, file: string, opts: ParseSharedOptions): RevocationList {
  const { reader, documents } = YamlReader.parse(text, file, { maxBytes: MAX_SHARED_REVOCATION_BYTES });
  const docs = documents.filter((d) => !isEmptyDocument(d));
  const fileProblem = (message: string): Problem => ({ file, line: 0, column: 0, message });
  if (reader.ok && docs.length !== 1) {
    reader.problems.push(
      fileProblem(
        docs.length === 0
          ? "is empty; write 'revoked: []' to revoke nobody"
          : `must hold exactly one YAML document, found ${docs.length}`,
      ),
    );
  }
  const by = `shared:${file}`;
  const seenAt = (id: string) => opts.previous?.byId.get(id)?.at ?? isoTime(opts.now());
  let all: RevocationEntry | undefined;
  const byId = new Map<string, RevocationEntry>();

  const doc = docs.length === 1 ? docs[0] : undefined;
  if (doc) {
    reader.useDocument(doc);
    const top = reader.map({ path: '', node: doc.contents as Node }, ['revoked', 'all']);
    if (top && !top.has('revoked') && !top.has('all')) {
      reader.report(top.node, undefined, "needs 'revoked:' (a list; 'revoked: []' for none) or 'all:'");
    }
    const revokedField = top?.get('revoked');
    for (const item of revokedField ? (reader.list(revokedField) ?? []) : []) {
      const entry = readEntry(reader, item, false);
      if (!entry) continue;
      // The same ID twice is harmless: the first entry stands.
      if (!byId.has(entry.id)) {
        byId.set(entry.id, Object.freeze({
          spiffeId: entry.id,
          reason: entry.reason ?? SHARED_DEFAULT_REASON,
          at: entry.at ?? seenAt(entry.id),
          by,
          source: 'shared' as const,
        }));
      }
    }
    const allField = top?.get('all');
    if (allField) {
      const entry = readEntry(reader, allField, true);
      if (entry) {
        all = Object.freeze({
          spiffeId: REVOKE_ALL,
          reason: entry.reason ?? SHARED_DEFAULT_REASON,
          at: entry.at ?? opts.previous?.all?.at ?? isoTime(opts.now()),
          by,
          source: 'shared' as const,
        });
      }
    }
  }
  if (!reader.ok) throw new ProblemsError(reader.problems, 'revocations_unreadable');
  return { all, byId };
}

function readEntry(
  reader: YamlReader,
  field: Field,
  isAll: boolean,
): { id: string; reason?: string; at?: string } | undefined {
  const map = reader.map(field, isAll ? ['reason', 'at'] : ['spiffe_id', 'reason', 'at']);
  if (!map) return undefined;
  let ok = true;
  let id = REVOKE_ALL;
  if (!isAll) {
    const idField = map.require('spiffe_id');
    const raw = idField ? reader.string(idField) : undefined;
    if (raw === undefined) return undefined;
    try {
      id = revocationId(raw);
    } catch (err) {
      reader.reportField(idField!, `not a valid SPIFFE ID: ${errorMessage(err)}`);
      ok = false;
    }
  }
  const out: { id: string; reason?: string; at?: string } = { id };
  const reasonField = map.get('reason');
  if (reasonField) {
    const reason = reader.string(reasonField, { allowEmpty: true });
    if (reason === undefined) ok = false;
    else {
      try {
        out.reason = checkText('reason', reason, MAX_REASON_LENGTH, true);
      } catch (err) {
        reader.reportField(reasonField, errorMessage(err));
        ok = false;
      }
    }
  }
  const atField = map.get('at');
  if (atField) {
    const at = reader.string(atField);
    if (at === undefined) ok = false;
    else {
      try {
        out.at = isoTime(at);
      } catch {
        reader.reportField(atField, `must be an ISO 8601 time such as 2025-01-01T00:00:00Z, got '${at}'`);
        ok = false;
      }
    }
  }
  return ok ? out : undefined;
}
