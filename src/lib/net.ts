/** Listening and closing for every server the sidecar runs (admin, inbound, outbound, demo). */
import type { Logger } from './log.js';
import type { Server } from 'node:net';

/**
 * Listens and resolves once bound; rejects with the bind error (EADDRINUSE, EACCES, ...).
 * Errors after that (accept failing with EMFILE when file descriptors run out) go to `onError`:
 * a server 'error' without a listener would end the process, and the listener keeps accepting
 * once descriptors are free again.
 */
export function listen(server: Server, at: { host: string; port: number }, onError: (err: Error) => void = () => undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      server.on('error', onError);
      resolve();
    });
  });
}

/** Stops accepting, drops kept-alive connections and resolves once the server is closed. */
export function closeServer(server: Server & { closeAllConnections?: () => void }): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections?.();
  });
}

/** An onError for `listen` that logs at most one line per 10 s, with how many it left out. */
export function throttledListenerErrorLog(logger: Pick<Logger, 'error'>, listener: string): (err: Error) => void {
  let last = -Infinity;
  let suppressed = 0;
  return (err) => {
    const now = Date.now();
    if (now - last < 10_000) {
      suppressed++;
      return;
    }
    last = now;
    logger.error({ listener, err: err.message, suppressed }, 'listener error (connections may be refused until it clears)');
    suppressed = 0;
  };
}
