/**
 * A client of the SPIRE server's Entry API (spire.api.server.entry.v1.Entry) on its admin Unix
 * socket (`server.socket_path`), where the server treats the caller as a local admin. The kill
 * switch uses three calls: list an agent's entries by SPIFFE ID, delete them in batches, and
 * re-create saved ones. Every call carries a deadline; failures are SpireServerError with a
 * catalogue reason; per-entry batch results are returned, never thrown.
 */
import * as grpc from '@grpc/grpc-js';
import { SidecarError } from '../errors.js';
import type { ReasonCode } from '../reasons.js';
import type { SpiffeId } from '../spiffe/id.js';
import {
  entryService,
  type BatchCreateEntryResponse,
  type BatchDeleteEntryResponse,
  type EntryMessage,
  type ListEntriesRequest,
  type ListEntriesResponse,
  type StatusMessage,
} from './proto.js';

export const DEFAULT_SPIRE_CALL_TIMEOUT_MS = 10_000;
/** Entries per batch call: well under gRPC's 4 MiB message limit with the largest entries. */
const BATCH_SIZE = 50;
const PAGE_SIZE = 500;
/** A bound on paging, so that a server handing out tokens forever cannot keep us listing. */
const MAX_PAGES = 200;

export class SpireServerError extends SidecarError {
  /** The gRPC status, when the server (or the channel) answered one. */
  readonly code: grpc.status | undefined;

  constructor(reason: ReasonCode, message: string, opts: { code?: grpc.status; cause?: unknown } = {}) {
    super(reason, message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.code = opts.code;
  }
}

const REASON_BY_CODE: Partial<Record<grpc.status, ReasonCode>> = {
  [grpc.status.UNAVAILABLE]: 'spire_server_unavailable',
  [grpc.status.DEADLINE_EXCEEDED]: 'spire_server_timeout',
  [grpc.status.UNIMPLEMENTED]: 'spire_server_unimplemented',
  [grpc.status.PERMISSION_DENIED]: 'spire_server_permission_denied',
  [grpc.status.UNAUTHENTICATED]: 'spire_server_permission_denied',
  [grpc.status.INVALID_ARGUMENT]: 'spire_server_invalid_argument',
};

/** What an operator most likely got wrong, by status. */
const ADVICE: Partial<Record<grpc.status, string>> = {
  [grpc.status.UNAVAILABLE]: 'is the SPIRE server running, and is this its server.socket_path?',
  [grpc.status.UNIMPLEMENTED]: "the socket does not serve the SPIRE server API (an agent's socket?)",
  [grpc.status.PERMISSION_DENIED]: "use the server's local admin socket (server.socket_path)",
};

export function statusName(code: number): string {
  return grpc.status[code] ?? `status ${code}`;
}

function errorFromStatus(err: Partial<grpc.StatusObject>, call: string): SpireServerError {
  const code = typeof err.code === 'number' ? (err.code as grpc.status) : grpc.status.UNKNOWN;
  const advice = ADVICE[code];
  return new SpireServerError(REASON_BY_CODE[code] ?? 'spire_server_error', `${call}: ${statusName(code)}: ${err.details || 'no details'}${advice ? ` (${advice})` : ''}`, { code, cause: err });
}

export interface SpireServerSocket {
  readonly uri: string;
  readonly path: string;
  readonly grpcTarget: string;
}

/** `unix:///absolute/path` (the server's admin socket); throws SpireServerError `spire_server_socket_invalid`. */
export function parseSpireServerSocket(uri: string): SpireServerSocket {
  const invalid = (why: string) => new SpireServerError('spire_server_socket_invalid', `invalid SPIRE server socket ${JSON.stringify(uri)}: ${why}`);
  if (!uri.startsWith('unix:')) throw invalid('use unix:///absolute/path (the server\'s server.socket_path; the admin API is local only)');
  if (/[\s\0?#]/.test(uri)) throw invalid('must not contain whitespace, NUL, a query or a fragment');
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw invalid('not a URI');
  }
  if (u.host !== '' || u.username || u.password) throw invalid('must not include an authority (use unix:///absolute/path)');
  let path: string;
  try {
    path = decodeURIComponent(u.pathname);
  } catch {
    throw invalid('bad percent-encoding in path');
  }
  if (!path.startsWith('/') || path === '/' || path.endsWith('/')) throw invalid('must name an absolute socket file path');
  return { uri, path, grpcTarget: `unix://${path}` };
}

/** One entry of a batch call and what the server answered for it. */
export interface EntryResult {
  /** The entry as sent (delete: as listed; create: as saved). */
  readonly entry: EntryMessage;
  readonly code: grpc.status;
  readonly message: string;
  /** Create only: the entry the server holds (created, or the similar one that already exists). */
  readonly stored?: EntryMessage;
}

export interface SpireEntryClientOptions {
  /** `unix:///path` of the server's admin socket. */
  socket: string;
  /** Deadline of each call (default 10 s). */
  timeoutMs?: number;
}

export class SpireEntryClient {
  readonly socket: SpireServerSocket;
  private readonly timeoutMs: number;
  private readonly client: grpc.Client;

  constructor(opts: SpireEntryClientOptions) {
    this.socket = parseSpireServerSocket(opts.socket);
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_SPIRE_CALL_TIMEOUT_MS;
    const Ctor = entryService();
    this.client = new Ctor(this.socket.grpcTarget, grpc.credentials.createInsecure(), {
      // A kill must report the server's own status, not retry it away behind the deadline.
      'grpc.enable_retries': 0,
    });
  }

  /** Every entry whose SPIFFE ID is `id`, all pages. */
  async listBySpiffeId(id: SpiffeId): Promise<EntryMessage[]> {
    const entries: EntryMessage[] = [];
    let pageToken = '';
    for (let page = 0; page < MAX_PAGES; page++) {
      const req: ListEntriesRequest = {
        filter: { by_spiffe_id: { trust_domain: id.trustDomain.name, path: id.path } },
        page_size: PAGE_SIZE,
        page_token: pageToken,
      };
      const res = await this.unary<ListEntriesRequest, ListEntriesResponse>('ListEntries', req);
      entries.push(...(res.entries ?? []));
      pageToken = res.next_page_token ?? '';
      if (pageToken === '') return entries;
    }
    throw new SpireServerError('spire_server_bad_response', `ListEntries: still more pages after ${MAX_PAGES} pages of ${PAGE_SIZE}`);
  }

  /** Deletes `entries` by ID; one result per entry, in order (OK and NOT_FOUND mean it is gone). */
  async deleteEntries(entries: readonly EntryMessage[]): Promise<EntryResult[]> {
    const results: EntryResult[] = [];
    for (let i = 0; i < entries.length; i += BATCH_SIZE) {
      const batch = entries.slice(i, i + BATCH_SIZE);
      const res = await this.unary<{ ids: string[] }, BatchDeleteEntryResponse>('BatchDeleteEntry', { ids: batch.map((e) => e.id) });
      const answered = res.results ?? [];
      if (answered.length !== batch.length) throw countMismatch('BatchDeleteEntry', batch.length, answered.length);
      batch.forEach((entry, k) => results.push({ entry, ...codeOf(answered[k]!.status) }));
    }
    return results;
  }

  /**
   * Creates `entries` with their saved IDs (the server honours a client-chosen ID); one result per
   * entry, in order. ALREADY_EXISTS means a similar entry (same SPIFFE ID, parent, selectors) is there.
   */
  async createEntries(entries: readonly EntryMessage[]): Promise<EntryResult[]> {
    const results: EntryResult[] = [];
    for (let i = 0; i < entries.length; i += BATCH_SIZE) {
      const batch = entries.slice(i, i + BATCH_SIZE);
      const res = await this.unary<{ entries: EntryMessage[] }, BatchCreateEntryResponse>('BatchCreateEntry', { entries: batch.map(forCreate) });
      const answered = res.results ?? [];
      if (answered.length !== batch.length) throw countMismatch('BatchCreateEntry', batch.length, answered.length);
      batch.forEach((entry, k) => {
        const r = answered[k]!;
        results.push({ entry, ...codeOf(r.status), ...(r.entry ? { stored: r.entry } : {}) });
      });
    }
    return results;
  }

  close(): void {
    this.client.close();
  }

  private unary<Req, Res>(method: 'ListEntries' | 'BatchDeleteEntry' | 'BatchCreateEntry', req: Req): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      const call = (this.client as unknown as Record<string, UnaryCall<Req, Res>>)[method]!;
      call.call(this.client, req, new grpc.Metadata(), { deadline: new Date(Date.now() + this.timeoutMs) }, (err, res) => {
        if (err) reject(errorFromStatus(err, method));
        else if (!res) reject(new SpireServerError('spire_server_bad_response', `${method}: empty response`));
        else resolve(res);
      });
    });
  }
}

/** A method of a proto-loader generated client. */
type UnaryCall<Req, Res> = (req: Req, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => grpc.ClientUnaryCall;

/** Server-managed fields are not sent back: the server assigns a revision and a creation time. */
function forCreate(entry: EntryMessage): EntryMessage {
  return { ...entry, revision_number: '0', created_at: '0' };
}

function codeOf(status: StatusMessage | null | undefined): { code: grpc.status; message: string } {
  return { code: (status?.code ?? grpc.status.UNKNOWN) as grpc.status, message: status?.message ?? 'no status in the result' };
}

function countMismatch(method: string, sent: number, got: number): SpireServerError {
  return new SpireServerError('spire_server_bad_response', `${method}: ${got} results for ${sent} entries`);
}
