/**
 * The kill switch's SPIRE step: delete an agent's registration entries (saved first, so that
 * restore can re-create them) and re-create them. The sidecars' own revocation is the instant
 * part of a kill; this is the cryptographic part: without an entry SPIRE issues the agent no
 * further SVID, so peers stop trusting it once its current SVID expires.
 *
 * Each step reports lines for the operator and an exit code: 0 done, 1 an entry or the file was
 * refused, 2 the server could not be asked (down, wrong socket, deadline).
 */
import * as grpc from '@grpc/grpc-js';
import { SidecarError, errorMessage } from '../errors.js';
import type { SpiffeId } from '../spiffe/id.js';
import { SpireServerError, statusName, type EntryResult, type SpireEntryClient } from './entry-client.js';
import { ENTRIES_FILE_FORMAT, mergeEntries, readEntriesFile, removeEntriesFile, spiffeIdText, writeEntriesFile } from './entries-file.js';
import type { EntryMessage } from './proto.js';

export interface SpireStepReport {
  exitCode: 0 | 1 | 2;
  lines: string[];
}

export interface AgentEntriesOptions {
  client: SpireEntryClient;
  id: SpiffeId;
  /** Where the entries are saved (kill) and read from (restore). */
  file: string;
  now?: () => Date;
}

/** Lists, saves, then deletes every entry whose SPIFFE ID is the agent's. */
export async function killAgentEntries(opts: AgentEntriesOptions): Promise<SpireStepReport> {
  const { client, id, file } = opts;
  const lines: string[] = [];
  let listed: EntryMessage[];
  let saved: EntryMessage[];
  try {
    listed = await client.listBySpiffeId(id);
    const foreign = listed.find((e) => spiffeIdText(e.spiffe_id) !== id.toString());
    if (foreign) throw new SpireServerError('spire_server_bad_response', `ListEntries: the server answered entry ${foreign.id} of ${spiffeIdText(foreign.spiffe_id)} for a filter on ${id.toString()}`);
    // A second kill keeps what an earlier one saved (those entries are no longer on the server).
    const earlier = (await readEntriesFile(file, id))?.entries ?? [];
    saved = mergeEntries(earlier, listed);
    await writeEntriesFile(file, { format: ENTRIES_FILE_FORMAT, spiffe_id: id.toString(), server_socket: client.socket.uri, saved_at: (opts.now?.() ?? new Date()).toISOString(), entries: saved });
  } catch (err) {
    return failed(lines, err, 'nothing was deleted in SPIRE');
  }
  if (listed.length === 0) {
    lines.push(`SPIRE: no registration entries for ${id.toString()} on ${client.socket.uri}; nothing to delete`);
    if (saved.length) lines.push(`SPIRE: ${saved.length} entries saved earlier are still in ${file}`);
    return done(0, lines);
  }
  lines.push(`SPIRE: saved ${listed.length} ${plural(listed.length, 'entry', 'entries')} to ${file}`);
  let results: EntryResult[];
  try {
    results = await client.deleteEntries(listed);
  } catch (err) {
    return failed(lines, err, 'the entries may or may not be deleted: run kill again (it is idempotent)');
  }
  let refused = 0;
  for (const r of results) {
    if (r.code === grpc.status.OK) lines.push(`SPIRE: deleted entry ${r.entry.id}: ${describeEntry(r.entry)}`);
    else if (r.code === grpc.status.NOT_FOUND) lines.push(`SPIRE: entry ${r.entry.id} was already deleted`);
    else {
      refused++;
      lines.push(`SPIRE: FAILED to delete entry ${r.entry.id}: ${statusName(r.code)}: ${r.message} [spire_entry_delete_failed]`);
    }
  }
  const gone = results.length - refused;
  lines.push(
    refused
      ? `SPIRE: ${refused} of ${results.length} entries NOT deleted: SPIRE keeps renewing the agent's SVID for them`
      : `SPIRE: ${gone} ${plural(gone, 'entry', 'entries')} deleted: no new SVID for ${id.toString()}; peers trust its current SVID until its notAfter`,
  );
  return done(refused ? 1 : 0, lines);
}

/** Re-creates the saved entries (same IDs); removes the file once every entry is back. */
export async function restoreAgentEntries(opts: AgentEntriesOptions): Promise<SpireStepReport> {
  const { client, id, file } = opts;
  const lines: string[] = [];
  let results: EntryResult[];
  try {
    const saved = await readEntriesFile(file, id);
    if (!saved) throw new SidecarError('spire_entries_file_missing', `no saved SPIRE entries for ${id.toString()} at ${file} (was it killed with --spire-server-socket and this --entries-file?)`);
    if (saved.entries.length === 0) {
      lines.push(`SPIRE: ${file} holds no entries (${id.toString()} had none when killed); nothing to re-create`);
      await removeEntriesFile(file);
      return done(0, lines);
    }
    results = await client.createEntries(saved.entries);
  } catch (err) {
    return failed(lines, err, 'nothing was re-created in SPIRE');
  }
  let refused = 0;
  for (const r of results) {
    const storedId = r.stored?.id ?? r.entry.id;
    if (r.code === grpc.status.OK) lines.push(`SPIRE: re-created entry ${storedId}${storedId === r.entry.id ? '' : ` (was ${r.entry.id})`}: ${describeEntry(r.entry)}`);
    else if (r.code === grpc.status.ALREADY_EXISTS) lines.push(`SPIRE: entry ${r.entry.id} is already registered (as ${storedId})`);
    else {
      refused++;
      lines.push(`SPIRE: FAILED to re-create entry ${r.entry.id}: ${statusName(r.code)}: ${r.message} [spire_entry_create_failed]`);
    }
  }
  if (refused) {
    lines.push(`SPIRE: ${refused} of ${results.length} entries NOT re-created; ${file} is kept: fix the cause and run restore again`);
    return done(1, lines);
  }
  try {
    await removeEntriesFile(file);
    lines.push(`SPIRE: ${results.length} ${plural(results.length, 'entry', 'entries')} registered again; removed ${file}`);
  } catch (err) {
    lines.push(`SPIRE: ${results.length} entries registered again; could not remove ${file}: ${errorMessage(err)}`);
  }
  return done(0, lines);
}

/** One line: parent, selectors and the settings an operator checks. */
export function describeEntry(e: EntryMessage): string {
  const parts = [`parent ${spiffeIdText(e.parent_id)}`, `selectors ${e.selectors.map((s) => `${s.type}:${s.value}`).join(',')}`];
  if (e.x509_svid_ttl) parts.push(`x509_svid_ttl ${e.x509_svid_ttl}s`);
  if (e.jwt_svid_ttl) parts.push(`jwt_svid_ttl ${e.jwt_svid_ttl}s`);
  if (e.hint) parts.push(`hint ${e.hint}`);
  if (e.federates_with.length) parts.push(`federates_with ${e.federates_with.join(',')}`);
  if (e.dns_names.length) parts.push(`dns ${e.dns_names.join(',')}`);
  if (e.admin) parts.push('admin');
  if (e.downstream) parts.push('downstream');
  return parts.join('; ');
}

/** Registration data and status messages are the server's (or the file's): no control character reaches the terminal. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function failed(lines: string[], err: unknown, consequence: string): SpireStepReport {
  const reason = err instanceof SidecarError ? err.reason : 'spire_server_error';
  lines.push(`SPIRE: ${errorMessage(err)} [${reason}]; ${consequence}`);
  // The server could not be asked: 2, like an unreachable admin API; a refusal of ours or its: 1.
  const unreachable = reason === 'spire_server_unavailable' || reason === 'spire_server_timeout' || reason === 'spire_server_unimplemented';
  return done(unreachable ? 2 : 1, lines);
}

function done(exitCode: SpireStepReport['exitCode'], lines: string[]): SpireStepReport {
  return { exitCode, lines: lines.map(printable) };
}

function plural(n: number, one: string, many: string): string {
  return n === 1 ? one : many;
}
