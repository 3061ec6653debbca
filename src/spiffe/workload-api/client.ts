/**
 * SPIFFE Workload API client over grpc-js (Unix socket or tcp). Streams are watched with
 * reconnects (capped exponential backoff with jitter) on Unavailable, PermissionDenied, other
 * transient failures and on a stream that ends; InvalidArgument and Unimplemented are fatal
 * (the spec says not to retry them). A message that fails to parse is reported and skipped: the
 * caller keeps its previous good state.
 */
import * as grpc from '@grpc/grpc-js';
import { decodeJwt } from 'jose';
import { SidecarError, errorMessage } from '../../errors.js';
import type { ReasonCode } from '../../reasons.js';
import { parseSpiffeId, type SpiffeId } from '../id.js';
import type { BundleSet } from '../bundle/bundle-set.js';
import type { JwtBundle } from '../bundle/jwt-bundle.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import { resolveWorkloadEndpoint, type WorkloadEndpoint } from './endpoint.js';
import { parseJwtBundles, parseX509Bundles, parseX509Context, type X509Context } from './parse.js';
import {
  WORKLOAD_HEADER_KEY,
  WORKLOAD_HEADER_VALUE,
  fromStructMessage,
  workloadApiService,
  type JwtBundlesResponse,
  type JwtSvidResponse,
  type ValidateJwtSvidResponse,
  type X509BundlesResponse,
  type X509SvidResponse,
} from './proto.js';
import type { Logger } from '../../lib/log.js';

export interface WorkloadApiClientOptions {
  /** `unix:///abs/path` or `tcp://IP:port`; default $SPIFFE_ENDPOINT_SOCKET. */
  endpoint?: string;
  /** Pick the X.509-SVID carrying this hint; default the first. */
  hint?: string;
  backoff?: BackoffOptions;
  /** Deadline for unary calls (FetchJWTSVID, ValidateJWTSVID). */
  unaryTimeoutMs?: number;
  logger?: Logger;
}

/** A failed Workload API call/stream. `fatal`: the watch has stopped and will not retry. */
export class WorkloadApiError extends SidecarError {
  readonly code: grpc.status | undefined;
  readonly fatal: boolean;
  constructor(reason: ReasonCode, message: string, opts: { code?: grpc.status; fatal?: boolean; cause?: unknown } = {}) {
    super(reason, message, { cause: opts.cause });
    this.code = opts.code;
    this.fatal = opts.fatal ?? false;
  }
}

const REASON_BY_CODE: Partial<Record<grpc.status, ReasonCode>> = {
  [grpc.status.UNAVAILABLE]: 'workload_api_unavailable',
  [grpc.status.PERMISSION_DENIED]: 'workload_api_permission_denied',
  [grpc.status.INVALID_ARGUMENT]: 'workload_api_invalid_argument',
  [grpc.status.UNIMPLEMENTED]: 'workload_api_unimplemented',
  [grpc.status.DEADLINE_EXCEEDED]: 'workload_api_timeout',
};

const FATAL_CODES = new Set<grpc.status>([grpc.status.INVALID_ARGUMENT, grpc.status.UNIMPLEMENTED]);

/** What an operator most likely got wrong when the agent answers a status retrying cannot fix. */
const FATAL_ADVICE: Partial<Record<grpc.status, string>> = {
  [grpc.status.UNIMPLEMENTED]: 'the socket does not serve the Workload API (is it the SPIRE server socket instead of the agent\'s?)',
  [grpc.status.INVALID_ARGUMENT]: 'the agent refused the request (a missing workload.spiffe.io metadata header, or not a SPIFFE Workload API)',
};

function errorFromStatus(err: Partial<grpc.StatusObject> & { message?: string }, what: string): WorkloadApiError {
  const code = typeof err.code === 'number' ? (err.code as grpc.status) : grpc.status.UNKNOWN;
  const reason = REASON_BY_CODE[code] ?? 'workload_api_error';
  const name = grpc.status[code] ?? String(code);
  const advice = FATAL_ADVICE[code];
  return new WorkloadApiError(reason, `${what}: ${name}: ${err.details ?? err.message ?? ''}`.trim() + (advice ? `; ${advice}` : ''), {
    code,
    fatal: FATAL_CODES.has(code),
    cause: err,
  });
}

export interface JwtSvid {
  readonly id: SpiffeId;
  /** JWS compact serialization. Keep it out of logs. */
  readonly token: string;
  readonly hint: string;
  readonly audience: readonly string[];
  readonly expiry: Date | undefined;
}

export interface ValidatedJwtSvid {
  readonly id: SpiffeId;
  readonly claims: Record<string, unknown>;
}

/** A running watch; cancel() stops it (no more callbacks). */
export interface Watch {
  cancel(): void;
}

type ErrorListener = (err: WorkloadApiError | SidecarError) => void;

/** One FetchJWTSVID answer, checked against what was asked (see fetchJwtSvid). */
function checkedJwtSvid(svid: { spiffe_id: string; svid: string; hint?: string }, i: number, audience: readonly string[], wantedId: SpiffeId | undefined): JwtSvid {
  const what = `FetchJWTSVID svids[${i}]`;
  let id: SpiffeId;
  let claims: ReturnType<typeof decodeJwt>;
  try {
    id = parseSpiffeId(svid.spiffe_id);
    claims = decodeJwt(svid.svid);
  } catch (err) {
    throw new WorkloadApiError('workload_api_bad_response', `${what}: ${errorMessage(err)}`, { cause: err });
  }
  if (claims.sub !== id.toString()) {
    throw new WorkloadApiError('jwt_svid_subject_mismatch', `${what}: token subject ${JSON.stringify(claims.sub)} is not its spiffe_id ${id.toString()}`);
  }
  if (wantedId && !wantedId.equals(id)) {
    throw new WorkloadApiError('jwt_svid_subject_mismatch', `${what}: asked for ${wantedId.toString()}, got ${id.toString()}`);
  }
  // RFC 7519 allows a single string; SPIRE always sends a list.
  const aud = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud.filter((a): a is string => typeof a === 'string') : [];
  const missing = audience.filter((a) => !aud.includes(a));
  if (missing.length > 0) {
    throw new WorkloadApiError(
      'jwt_svid_audience_mismatch',
      `${what}: token audience ${JSON.stringify(aud)} does not hold the requested ${JSON.stringify(missing)}`,
    );
  }
  return {
    id,
    token: svid.svid,
    hint: svid.hint ?? '',
    audience: aud,
    expiry: typeof claims.exp === 'number' ? new Date(claims.exp * 1000) : undefined,
  };
}

export class WorkloadApiClient {
  readonly endpoint: WorkloadEndpoint;
  private readonly grpcClient: grpc.Client;
  private readonly hint: string | undefined;
  private readonly backoffOpts: BackoffOptions;
  private readonly unaryTimeoutMs: number;
  private readonly logger: Logger | undefined;
  private readonly watches = new Set<Watch>();
  private closed = false;

  /** Throws SidecarError `workload_endpoint_invalid` / `workload_endpoint_missing`. */
  constructor(opts: WorkloadApiClientOptions = {}) {
    this.endpoint = resolveWorkloadEndpoint(opts.endpoint);
    this.hint = opts.hint || undefined;
    this.backoffOpts = opts.backoff ?? {};
    this.unaryTimeoutMs = opts.unaryTimeoutMs ?? 10_000;
    this.logger = opts.logger;
    const Ctor = workloadApiService();
    this.grpcClient = new Ctor(this.endpoint.grpcTarget, grpc.credentials.createInsecure(), {
      // Keep the channel's own reconnect pace in line with ours (grpc-js defaults to 1 s .. 120 s).
      'grpc.initial_reconnect_backoff_ms': this.backoffOpts.initialMs ?? 100,
      'grpc.max_reconnect_backoff_ms': this.backoffOpts.maxMs ?? 5000,
      // The Workload API sees one trusted local agent: no transparent retries hiding its status codes.
      'grpc.enable_retries': 0,
    });
  }

  private metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    metadata.set(WORKLOAD_HEADER_KEY, WORKLOAD_HEADER_VALUE);
    return metadata;
  }

  private assertOpen(): void {
    if (this.closed) throw new SidecarError('workload_api_closed', 'Workload API client is closed');
  }

  /** FetchX509SVID: every message is the full state; onUpdate gets the parsed context. */
  watchX509Context(onUpdate: (ctx: X509Context) => void, onError: ErrorListener): Watch {
    return this.watchStream<X509SvidResponse, X509Context>(
      'FetchX509SVID',
      (msg) => parseX509Context(msg, this.hint),
      onUpdate,
      onError,
    );
  }

  /** FetchX509Bundles: own + federated X.509 bundles. */
  watchX509Bundles(onUpdate: (bundles: BundleSet) => void, onError: ErrorListener): Watch {
    return this.watchStream<X509BundlesResponse, BundleSet>('FetchX509Bundles', parseX509Bundles, onUpdate, onError);
  }

  /** FetchJWTBundles: trust domain name -> JWT bundle. */
  watchJwtBundles(onUpdate: (bundles: ReadonlyMap<string, JwtBundle>) => void, onError: ErrorListener): Watch {
    return this.watchStream<JwtBundlesResponse, ReadonlyMap<string, JwtBundle>>(
      'FetchJWTBundles',
      parseJwtBundles,
      onUpdate,
      onError,
    );
  }

  /**
   * FetchJWTSVID. Every returned JWT-SVID must name its `spiffe_id` in `sub` (and be the one asked
   * for, if any) and hold every requested audience in `aud`; otherwise the call rejects with
   * WorkloadApiError `jwt_svid_subject_mismatch` / `jwt_svid_audience_mismatch` (a confused or
   * hostile agent), or `workload_api_bad_response` for a token that does not parse.
   */
  async fetchJwtSvid(req: { audience: string[]; spiffeId?: string }): Promise<JwtSvid[]> {
    this.assertOpen();
    if (!Array.isArray(req.audience) || req.audience.length === 0 || req.audience.some((a) => !a)) {
      throw new SidecarError('jwt_svid_audience_missing', 'FetchJWTSVID needs at least one non-empty audience');
    }
    const wantedId = req.spiffeId ? parseSpiffeId(req.spiffeId) : undefined;
    const resp = await this.unary<JwtSvidResponse>('FetchJWTSVID', { audience: req.audience, spiffe_id: wantedId?.toString() ?? '' });
    const svids = resp.svids ?? [];
    if (svids.length === 0) throw new WorkloadApiError('workload_api_bad_response', 'FetchJWTSVID returned no SVIDs');
    return svids.map((svid, i) => checkedJwtSvid(svid, i, req.audience, wantedId));
  }

  /** ValidateJWTSVID. An invalid token rejects with reason `workload_api_invalid_argument`. */
  async validateJwtSvid(token: string, audience: string): Promise<ValidatedJwtSvid> {
    this.assertOpen();
    if (!token) throw new SidecarError('jwt_svid_missing', 'ValidateJWTSVID needs a token');
    if (!audience) throw new SidecarError('jwt_svid_audience_missing', 'ValidateJWTSVID needs an audience');
    const resp = await this.unary<ValidateJwtSvidResponse>('ValidateJWTSVID', { audience, svid: token });
    try {
      return { id: parseSpiffeId(resp.spiffe_id), claims: fromStructMessage(resp.claims) };
    } catch (err) {
      throw new WorkloadApiError('workload_api_bad_response', `ValidateJWTSVID: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** Cancels every watch and closes the channel. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of [...this.watches]) w.cancel();
    this.grpcClient.close();
  }

  private unary<T>(method: string, request: object): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const deadline = new Date(Date.now() + this.unaryTimeoutMs);
      this.grpcClient.makeUnaryRequest<object, T>(
        `/SpiffeWorkloadAPI/${method}`,
        (arg) => this.serialize(method, arg),
        (buf) => this.deserialize<T>(method, buf),
        request,
        this.metadata(),
        { deadline },
        (err, value) => {
          if (err) reject(errorFromStatus(err, method));
          else if (value === undefined) reject(new WorkloadApiError('workload_api_bad_response', `${method}: empty response`));
          else resolve(value);
        },
      );
    });
  }

  private serialize(method: string, arg: object): Buffer {
    return this.methodDef(method).requestSerialize(arg);
  }

  private deserialize<T>(method: string, buf: Buffer): T {
    return this.methodDef(method).responseDeserialize(buf) as T;
  }

  private methodDef(method: string): grpc.MethodDefinition<object, unknown> {
    const def = workloadApiService().service[method];
    if (!def) throw new Error(`unknown Workload API method ${method}`);
    return def as grpc.MethodDefinition<object, unknown>;
  }

  /**
   * Runs one server stream forever: (re)open, parse each message, back off and reopen when it
   * fails or ends, stop on a fatal status or cancel().
   */
  private watchStream<M, T>(method: string, parse: (m: M) => T, onUpdate: (v: T) => void, onError: ErrorListener): Watch {
    this.assertOpen();
    const backoff = new Backoff(this.backoffOpts);
    let cancelled = false;
    let call: grpc.ClientReadableStream<M> | undefined;
    let timer: NodeJS.Timeout | undefined;

    const report = (err: WorkloadApiError | SidecarError): void => {
      if (cancelled) return;
      try {
        onError(err);
      } catch (cbErr) {
        this.logger?.error({ err: errorMessage(cbErr), method }, 'Workload API error listener threw');
      }
    };

    const scheduleRetry = (): void => {
      if (cancelled) return;
      const delay = backoff.next();
      this.logger?.debug({ method, delayMs: delay }, 'Workload API stream: retrying');
      timer = setTimeout(open, delay);
    };

    const open = (): void => {
      timer = undefined;
      if (cancelled) return;
      const def = this.methodDef(method);
      const thisCall = this.grpcClient.makeServerStreamRequest<object, M>(
        def.path,
        def.requestSerialize,
        def.responseDeserialize as (b: Buffer) => M,
        {},
        this.metadata(),
        {},
      );
      call = thisCall;
      let finished = false;
      const finish = (err: WorkloadApiError): void => {
        if (finished || cancelled || call !== thisCall) return;
        finished = true;
        call = undefined;
        report(err);
        if (err.fatal) {
          this.logger?.error(
            { method, endpoint: this.endpoint.uri, reason: err.reason, err: err.message },
            `Workload API stream failed with a status retrying cannot fix; not retrying: ${err.message}`,
          );
          cancel();
        } else {
          this.logger?.warn({ method, reason: err.reason, err: err.message }, 'Workload API stream interrupted');
          scheduleRetry();
        }
      };
      thisCall.on('data', (msg: M) => {
        if (cancelled || call !== thisCall) return;
        let value: T;
        try {
          value = parse(msg);
        } catch (err) {
          const failure = err instanceof SidecarError ? err : new WorkloadApiError('workload_api_bad_response', errorMessage(err), { cause: err });
          this.logger?.warn({ method, reason: failure.reason, err: failure.message }, 'Workload API message rejected; keeping previous state');
          report(failure);
          return;
        }
        backoff.reset();
        try {
          onUpdate(value);
        } catch (cbErr) {
          this.logger?.error({ err: errorMessage(cbErr), method }, 'Workload API update listener threw');
        }
      });
      // grpc-js emits 'error' (non-OK status) then 'status'; a clean end gives only 'status' OK.
      thisCall.on('error', (err: grpc.ServiceError) => finish(errorFromStatus(err, method)));
      thisCall.on('status', (callStatus: grpc.StatusObject) => {
        if (callStatus.code === grpc.status.OK) {
          finish(new WorkloadApiError('workload_api_stream_ended', `${method}: stream ended by the server`));
        }
      });
    };

    const cancel = (): void => {
      if (cancelled) return;
      cancelled = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      const pendingCall = call;
      call = undefined;
      pendingCall?.cancel();
      this.watches.delete(watch);
    };
    const watch: Watch = { cancel };
    this.watches.add(watch);
    open();
    return watch;
  }
}
