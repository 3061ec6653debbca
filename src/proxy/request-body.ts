/**
 * Request bodies on their way through a sidecar: the body-progress timeout (a client that stops
 * sending its body is answered 408 instead of holding an upstream connection), reading a small
 * body whole (for replay), and `Expect: 100-continue`, which each sidecar answers itself.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** How long a request body may bring no byte before it is abandoned (408). */
export const DEFAULT_BODY_PROGRESS_TIMEOUT_MS = 30_000;

/** A request body that stopped arriving (see ForwardOptions.bodyProgressTimeoutMs). */
export class RequestBodyTimeoutError extends Error {
  readonly code = 'ERR_REQUEST_BODY_TIMEOUT';
  constructor(ms: number) {
    super(`no request body byte for ${ms} ms`);
  }
}

const kAwaitingContinue = Symbol('attest-sidecar.awaiting-continue');
type ContinueResponse = ServerResponse & { [kAwaitingContinue]?: boolean };

/**
 * The servers' 'checkContinue' listener: a request that sent `Expect: 100-continue` gets the
 * 100 only once it is admitted and its body is about to be read (continueRequest), so a refused
 * request never makes the client send its body. Until then the connection is marked to close:
 * a client told no 100 may or may not send the body, so the connection cannot be reused after
 * a refusal. (Node calls the request handler only when this event is handled.)
 */
export function awaitContinue(handler: (req: IncomingMessage, res: ServerResponse) => void): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const continueResponse = res as ContinueResponse;
    continueResponse[kAwaitingContinue] = res.shouldKeepAlive;
    res.shouldKeepAlive = false;
    handler(req, res);
  };
}

/** Sends the 100 Continue a request is waiting for (see awaitContinue); a no-op otherwise. */
export function continueRequest(res: ServerResponse): void {
  const continueResponse = res as ContinueResponse;
  const keepAlive = continueResponse[kAwaitingContinue];
  if (keepAlive === undefined || res.headersSent) return;
  continueResponse[kAwaitingContinue] = undefined;
  res.shouldKeepAlive = keepAlive;
  res.writeContinue();
}

/** What checkBodyProgress needs of an exchange (ForwardHandler). */
export interface BodyProgressWatch {
  readonly ended: boolean;
  readonly connected: boolean;
  bodyBytesRead: number;
  bodyTimer: NodeJS.Timeout | undefined;
  onBodyStalled(): void;
}

/**
 * The body-progress check, every `ms` while the body streams: bytes arrived on the client's
 * connection since the last check, or the body is not being read (the upstream holds it back,
 * or no upstream connection took it yet), re-arm; otherwise the body stalled. A stall is thus
 * noticed between one and two periods after the last byte, with no work per chunk.
 */
export function checkBodyProgress(handler: BodyProgressWatch, req: IncomingMessage): void {
  if (handler.ended || req.complete || req.destroyed) return;
  const read = req.socket?.bytesRead ?? 0;
  if (read !== handler.bodyBytesRead || req.readableFlowing !== true || !handler.connected) {
    handler.bodyBytesRead = read;
    handler.bodyTimer?.refresh();
    return;
  }
  handler.onBodyStalled();
}

/** A body that sent more than its Content-Length announced (read for replay). */
class BodyTooLargeError extends Error {}

/**
 * Reads a request body of at most `limit` bytes; rejects with RequestBodyTimeoutError when no
 * byte arrives for `progressMs`, and when the client goes away.
 */
export function readBody(req: IncomingMessage, limit: number, progressMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => fail(new RequestBodyTimeoutError(progressMs)), progressMs);
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return fail(new BodyTooLargeError(`request body over ${limit} bytes`));
      chunks.push(chunk);
      timer.refresh();
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks));
    };
    const onClose = () => fail(new Error('client closed the request body'));
    const cleanup = () => {
      clearTimeout(timer);
      req.off('data', onData).off('end', onEnd).off('error', fail).off('close', onClose);
    };
    function fail(err: Error): void {
      cleanup();
      req.pause();
      reject(err);
    }
    req.on('data', onData).once('end', onEnd).once('error', fail).once('close', onClose);
  });
}
