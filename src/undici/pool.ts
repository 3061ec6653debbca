/**
 * undici's Pool, loaded without undici's index. The index also loads fetch, WebSocket,
 * EventSource, the cache stores and the mock agents, which the data plane never uses but
 * every sidecar would keep resident. undici 7 has no exports map, so the class is required
 * from its own file, and its request methods (`stream`, `request`, ...) are installed on
 * Dispatcher.prototype exactly as undici's index installs them (idempotent: the index, if some
 * other module loads it, assigns the same functions). A test checks that this Pool is the class
 * the index exports.
 */
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Dispatcher as UndiciDispatcher, Pool as UndiciPool } from 'undici';

const requireCjs = createRequire(import.meta.url);

const Dispatcher = requireCjs('undici/lib/dispatcher/dispatcher.js') as typeof UndiciDispatcher;
Object.assign(Dispatcher.prototype, requireCjs('undici/lib/api/index.js'));

export const Pool = requireCjs('undici/lib/dispatcher/pool.js') as typeof UndiciPool;
export type Pool = UndiciPool;

type Connector = (opts: object, callback: (err: Error | null, socket: Socket | TLSSocket | null) => void) => void;
const buildConnector = requireCjs('undici/lib/core/connect.js') as (opts: object) => Connector;

/**
 * undici's connector, except that a TLS alert arriving after the handshake (a TLS 1.3 server
 * refusing our certificate sends it then) fails the request with that alert: undici replaces it
 * with the 'other side closed' of the end that follows, which hides why the peer refused.
 */
export function connectorKeepingTlsAlerts(options: object): Connector {
  const connect = buildConnector(options);
  return (opts, callback) =>
    connect(opts, (err, socket) => {
      socket?.prependListener('error', (e: NodeJS.ErrnoException) => {
        if (e.code?.startsWith('ERR_SSL')) socket.destroy(e);
      });
      callback(err, socket);
    });
}
