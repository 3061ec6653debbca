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
import type { Dispatcher as UndiciDispatcher, Pool as UndiciPool } from 'undici';

const requireCjs = createRequire(import.meta.url);

const Dispatcher = requireCjs('undici/lib/dispatcher/dispatcher.js') as typeof UndiciDispatcher;
Object.assign(Dispatcher.prototype, requireCjs('undici/lib/api/index.js'));

export const Pool = requireCjs('undici/lib/dispatcher/pool.js') as typeof UndiciPool;
export type Pool = UndiciPool;
