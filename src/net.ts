/** Listening and closing for every server the sidecar runs (admin, inbound, outbound, demo). */
import type { Server } from 'node:net';

/** Listens and resolves once bound; rejects with the bind error (EADDRINUSE, EACCES, ...). */
export function listen(server: Server, at: { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
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
