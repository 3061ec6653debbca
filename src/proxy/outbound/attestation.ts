/**
 * The attestation handshake of an outbound SPIFFE route, as an undici interceptor composed on
 * the route's pool (`dispatch => (opts, handler) => boolean`).
 *
 * A request carries this generation's evidence: its id (`attest-evidence-ref`) once the peer
 * accepted the full evidence on this route, the full envelope (`attest-evidence`) until then.
 * A 401 carrying `attest-challenge` is answered here, once, and never reaches the agent:
 * `evidence` gets the full envelope, `nonce=<b64url>` fresh evidence over the nonce; the request
 * is replayed with its buffered body. Bodies over MAX_REPLAY_BYTES or of unknown length cannot
 * be replayed, so they always carry the full evidence and the peer has no reason to ask (a peer
 * that restarted, changed policy or never saw this generation's evidence still accepts them).
 *
 * The route counts the evidence as accepted only after a 2xx or 3xx answer to a request that
 * carried it: a refusal (403 for an action not permitted, 429, ...) may come before the peer
 * looked at the evidence at all.
 *
 * The warm bodiless request (evidence accepted and produced) stays on the caller's stack: the
 * ref is appended to the request's header list, which the interceptor takes over (the proxy
 * builds one per request), and one handler per exchange is all it adds.
 */
import type { IncomingMessage } from 'node:http';
import type { Dispatcher } from 'undici';
import type { PreparedEvidence } from '../../attestation/attester.js';
import { refuse, refusal, type Refusal } from '../../reasons.js';
import { legacyHandler, type LegacyHandler } from '../../undici/handler.js';
import { H_CHALLENGE, H_EVIDENCE, H_NONCE, H_REF } from '../attestation-gate.js';
import { ExchangeFailure, type UpstreamFailure } from '../forward.js';
import { RequestBodyTimeoutError, readBody } from '../request-body.js';
import type { SessionEvidence } from './evidence.js';

/** Largest request body buffered so that an attestation challenge can be answered by replay. */
export const MAX_REPLAY_BYTES = 64 * 1024;

/** What the handshake remembers of a route across its pools (identity generations, revocation swaps). */
export interface AttestedRoute {
  /** Id of the evidence the peer behind this route accepted; later requests send only the id. */
  ackedEvidenceId?: string | undefined;
}

export interface AttestationInterceptorOptions {
  route: AttestedRoute;
  /** The evidence of the identity generation the pool dials with. */
  evidence: SessionEvidence;
  /** A body buffered for replay that brings no byte for this long is abandoned (408). */
  bodyProgressTimeoutMs: number;
}

type Dispatch = Dispatcher['dispatch'];
type Options = Dispatcher.DispatchOptions;

const enum Mode {
  /** Bodiless, with the ref: a challenge restarts the exchange with the full evidence. */
  Warm,
  /** With the evidence or its ref: a challenge is answered by one replay. */
  First,
  /** The replay: its answer, challenge or not, goes to the agent. */
  Replay,
}

const H_CONTENT_LENGTH = 'content-length';

export function attestationInterceptor(options: AttestationInterceptorOptions): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) =>
    function attest(opts: Options, handler: Dispatcher.DispatchHandler): boolean {
      const inner = legacyHandler(handler);
      const ready = options.evidence.ready;
      const headers = opts.headers;
      if (ready !== undefined && opts.body == null && options.route.ackedEvidenceId === ready.id && Array.isArray(headers)) {
        const base = headers.length;
        (headers as string[]).push(H_REF, ready.id);
        return dispatch(opts, new AttestedExchange(dispatch, opts, headers as string[], base, inner, options, ready, Mode.Warm, false, null));
      }
      void exchangeWithEvidence(dispatch, opts, headerList(headers), inner, options);
      return true;
    };
}

/** One exchange with the peer; passes everything through to the caller's handler but a challenge. */
class AttestedExchange implements LegacyHandler {
  private challenge: string | undefined = undefined;

  constructor(
    private readonly dispatch: Dispatch,
    private readonly opts: Options,
    /** The request's header list without evidence fields (for Warm: with, up to `base`). */
    private readonly headers: string[],
    private readonly base: number,
    private readonly inner: LegacyHandler,
    private readonly options: AttestationInterceptorOptions,
    private readonly evidence: PreparedEvidence,
    private readonly mode: Mode,
    /** The request carries this generation's full evidence: a 2xx or 3xx marks it accepted. */
    private readonly sentFull: boolean,
    /** The body to replay; undefined when it was streamed (cannot be replayed). */
    private readonly replayBody: Buffer | Uint8Array | string | null | undefined,
  ) {}

  onConnect(abort: (err?: Error) => void, context?: unknown): void {
    this.inner.onConnect(abort, context);
  }

  onResponseStarted(): void {
    this.inner.onResponseStarted?.();
  }

  onUpgrade(statusCode: number, headers: Buffer[] | string[] | null, socket: unknown): void {
    this.inner.onUpgrade?.(statusCode, headers, socket);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText?: string): boolean {
    if (statusCode === 401 && this.mode !== Mode.Replay) {
      const challenge = challengeOf(rawHeaders);
      if (challenge !== undefined) {
        this.challenge = challenge;
        return true; // its body is read and dropped
      }
    }
    if (this.sentFull && statusCode >= 200 && statusCode < 400) this.options.route.ackedEvidenceId = this.evidence.id;
    return this.inner.onHeaders(statusCode, rawHeaders, resume, statusText);
  }

  onData(chunk: Buffer): boolean {
    return this.challenge !== undefined || this.inner.onData(chunk);
  }

  onComplete(trailers: string[] | Buffer[] | null): void {
    const challenge = this.challenge;
    if (challenge === undefined) {
      this.inner.onComplete(trailers);
      return;
    }
    if (this.mode === Mode.Warm) {
      // The peer forgot us (restart, policy change) or wants fresh evidence: the full exchange.
      this.options.route.ackedEvidenceId = undefined;
      this.headers.length = this.base;
      void exchangeWithEvidence(this.dispatch, this.opts, this.headers, this.inner, this.options);
      return;
    }
    this.answer(challenge).catch((err: unknown) => this.inner.onError(asError(err)));
  }

  onError(err: Error): void {
    this.inner.onError(err);
  }

  private async answer(challenge: string): Promise<void> {
    if (this.replayBody === undefined) return fail(this.inner, refusal('attestation_replay_too_large'));
    let headers: string[];
    if (challenge === 'evidence') {
      headers = this.headers.concat(H_EVIDENCE, this.evidence.header);
    } else if (challenge.startsWith('nonce=')) {
      const nonce = challenge.slice('nonce='.length);
      let fresh: PreparedEvidence;
      try {
        fresh = await this.options.evidence.fresh(Buffer.from(nonce, 'base64url'));
      } catch (err) {
        return fail(this.inner, attesterError(err));
      }
      headers = this.headers.concat(H_EVIDENCE, fresh.header, H_NONCE, nonce);
    } else {
      return fail(this.inner, refuse('attestation_challenge_unknown', `Unknown attestation challenge '${challenge.slice(0, 64)}'`));
    }
    const replay = new AttestedExchange(this.dispatch, this.opts, this.headers, 0, this.inner, this.options, this.evidence, Mode.Replay, challenge === 'evidence', null);
    send(this.dispatch, { ...this.opts, headers, body: this.replayBody }, replay);
  }
}

/** The exchange with the evidence (or its ref): the body is buffered first when it can be replayed. */
async function exchangeWithEvidence(dispatch: Dispatch, opts: Options, base: string[], inner: LegacyHandler, options: AttestationInterceptorOptions): Promise<void> {
  let evidence: PreparedEvidence;
  try {
    evidence = await options.evidence.get();
  } catch (err) {
    return fail(inner, attesterError(err));
  }
  const body = opts.body;
  const size = bodySize(body, base);
  const replayable = size <= MAX_REPLAY_BYTES;
  let replayBody: Buffer | Uint8Array | string | null | undefined;
  if (!replayable) replayBody = undefined;
  else if (body == null || size === 0) replayBody = null;
  else if (typeof body === 'string' || body instanceof Uint8Array) replayBody = body;
  else {
    try {
      replayBody = await readBody(body as IncomingMessage, MAX_REPLAY_BYTES, options.bodyProgressTimeoutMs);
    } catch (err) {
      if (err instanceof RequestBodyTimeoutError) return inner.onError(err);
      return fail(inner, refuse('request_body_unreadable', `Request body could not be read: ${asError(err).message}`));
    }
  }
  const sentFull = options.route.ackedEvidenceId !== evidence.id || !replayable;
  const headers = sentFull ? base.concat(H_EVIDENCE, evidence.header) : base.concat(H_REF, evidence.id);
  const exchange = new AttestedExchange(dispatch, opts, base, base.length, inner, options, evidence, Mode.First, sentFull, replayBody);
  send(dispatch, { ...opts, headers, body: replayBody === undefined ? body : replayBody }, exchange);
}

function send(dispatch: Dispatch, opts: Options, handler: AttestedExchange): void {
  try {
    dispatch(opts, handler);
  } catch (err) {
    handler.onError(asError(err));
  }
}

function fail(inner: LegacyHandler, refusal: Refusal): void {
  const failure: UpstreamFailure = { status: refusal.status, reason: refusal.reason, message: refusal.error, decision: refusal.decision, local: true };
  inner.onError(new ExchangeFailure(failure));
}

function attesterError(err: unknown): Refusal {
  return refuse('attester_error', `Attestation failed on this side: ${asError(err).message}`);
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** The challenge of a 401: the one `attest-challenge` field's value (a repeated field is none). */
function challengeOf(raw: readonly Buffer[]): string | undefined {
  let found: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length !== H_CHALLENGE.length || name.toString('latin1').toLowerCase() !== H_CHALLENGE) continue;
    if (found !== undefined) return undefined;
    found = raw[i + 1]!.toString('latin1');
  }
  return found;
}

/** Body size in bytes: Infinity for a stream without Content-Length (chunked). */
function bodySize(body: Options['body'], headers: readonly string[]): number {
  if (body == null) return 0;
  if (typeof body === 'string') return Buffer.byteLength(body);
  if (body instanceof Uint8Array) return body.length;
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i]!.length === H_CONTENT_LENGTH.length && headers[i]!.toLowerCase() === H_CONTENT_LENGTH) {
      const n = Number(headers[i + 1]);
      return Number.isSafeInteger(n) && n >= 0 ? n : Infinity;
    }
  }
  return Infinity;
}

/** The request's headers as a flat [name, value, ...] list (the proxy always passes one). */
function headerList(headers: Options['headers']): string[] {
  if (headers == null) return [];
  if (Array.isArray(headers)) return headers as string[];
  const out: string[] = [];
  for (const [name, value] of Object.entries(headers as Record<string, string | string[] | undefined>)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const v of value) out.push(name, v);
    else out.push(name, value);
  }
  return out;
}
