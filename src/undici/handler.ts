/**
 * undici's two handler interfaces, and interceptors that speak the older one.
 *
 * A Pool speaks the legacy interface natively (onConnect, onHeaders with raw Buffers, onData,
 * onComplete, onError); a handler of the controller interface (onRequestStart, ...) is adapted
 * onto it per request, header object and all. The proxy's handlers and its interceptor speak
 * the legacy interface so that nothing is adapted on the request path.
 */
import { createRequire } from 'node:module';
import type { Dispatcher } from 'undici';

const requireCjs = createRequire(import.meta.url);

/** The legacy handler interface, every method present. */
export interface LegacyHandler {
  onConnect(abort: (err?: Error) => void, context?: unknown): void;
  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText?: string): boolean;
  onData(chunk: Buffer): boolean;
  onComplete(trailers: string[] | Buffer[] | null): void;
  onError(err: Error): void;
  onUpgrade?(statusCode: number, headers: Buffer[] | string[] | null, socket: unknown): void;
  onResponseStarted?(): void;
}

const UnwrapHandler = requireCjs('undici/lib/handler/unwrap-handler.js') as { unwrap(handler: Dispatcher.DispatchHandler): LegacyHandler };

/**
 * The handler as a legacy one: itself when it has `onHeaders` (the proxy's, and undici's
 * WrapHandler, which compose() puts around a legacy handler), else undici's own adapter.
 */
export function legacyHandler(handler: Dispatcher.DispatchHandler): LegacyHandler {
  return typeof handler.onHeaders === 'function' ? (handler as unknown as LegacyHandler) : UnwrapHandler.unwrap(handler);
}

/**
 * `interceptor` applied over `dispatcher`, as `dispatcher.compose(interceptor)` does but without
 * the per-request handler wrapper compose() adds: the interceptor gets the caller's handler as
 * it is (see legacyHandler). Only `dispatch` is offered; close the dispatcher itself.
 */
export function composeLegacy(dispatcher: Dispatcher, interceptor: Dispatcher.DispatcherComposeInterceptor): Pick<Dispatcher, 'dispatch'> {
  return { dispatch: interceptor(dispatcher.dispatch.bind(dispatcher)) };
}
