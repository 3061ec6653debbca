/**
 * `inbound.limits` / `outbound.limits`: how long a client connection may sit idle or take to
 * send its request, and how many connections a listener holds (in total, and per verified peer
 * identity on the inbound side). Every value has a bound by default: a connection that sends
 * nothing, or trickles, is closed, and a flood of connections cannot use up the process's file
 * descriptors (which would make every port of the sidecar unreachable).
 */
import { readDuration } from '../lib/fields.js';
import type { Field, YamlReader } from '../lib/yaml-reader.js';

export interface ListenerLimits {
  /** Time from a request's first byte to the end of its headers; over it: 408 and close. */
  headersTimeoutMs: number;
  /** A connection with no request in progress (fresh, or kept alive between requests) is closed after this. */
  idleTimeoutMs: number;
  /** A request body that delivers no byte for this long is answered 408 (enforced while forwarding). */
  bodyProgressTimeoutMs: number;
  /** Inbound: TLS handshake (client hello to finished) bound. Outbound (plain HTTP): unused. */
  handshakeTimeoutMs: number;
  /** Open connections the listener holds; more are closed at once (reason `connection_limit`). */
  maxConnections: number;
  /** Inbound: verified connections per peer SPIFFE ID (reason `peer_connection_limit`). 0: no per-peer cap. */
  maxConnectionsPerPeer: number;
}

export const INBOUND_LIMIT_DEFAULTS: Readonly<ListenerLimits> = Object.freeze({
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  bodyProgressTimeoutMs: 30_000,
  handshakeTimeoutMs: 10_000,
  maxConnections: 1024,
  maxConnectionsPerPeer: 256,
});

/** Outbound callers are local processes without an identity: a total cap only. */
export const OUTBOUND_LIMIT_DEFAULTS: Readonly<ListenerLimits> = Object.freeze({
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  bodyProgressTimeoutMs: 30_000,
  handshakeTimeoutMs: 0,
  maxConnections: 512,
  maxConnectionsPerPeer: 0,
});

/** Fixed limits of the admin listeners (loopback status, health, metrics; optional mTLS). */
export const ADMIN_LIMITS: Readonly<ListenerLimits> = Object.freeze({
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 30_000,
  bodyProgressTimeoutMs: 30_000,
  handshakeTimeoutMs: 10_000,
  maxConnections: 64,
  maxConnectionsPerPeer: 0,
});

const MAX_CONNECTIONS_CEILING = 1_000_000;

const COMMON_KEYS = ['headers_timeout', 'idle_timeout', 'body_progress_timeout', 'max_connections'];
const INBOUND_KEYS = [...COMMON_KEYS, 'handshake_timeout', 'max_connections_per_peer'];

/** Reads a `limits:` map; absent keys take `defaults`. Undefined (reported) when a value is invalid. */
export function readLimits(reader: YamlReader, field: Field | undefined, direction: 'inbound' | 'outbound'): ListenerLimits | undefined {
  const defaults = direction === 'inbound' ? INBOUND_LIMIT_DEFAULTS : OUTBOUND_LIMIT_DEFAULTS;
  if (!field) return { ...defaults };
  const m = reader.map(field, direction === 'inbound' ? INBOUND_KEYS : COMMON_KEYS);
  if (!m) return undefined;
  const headersTimeoutMs = readDuration(reader, m.get('headers_timeout'), defaults.headersTimeoutMs);
  const idleTimeoutMs = readDuration(reader, m.get('idle_timeout'), defaults.idleTimeoutMs);
  const bodyProgressTimeoutMs = readDuration(reader, m.get('body_progress_timeout'), defaults.bodyProgressTimeoutMs);
  const handshakeTimeoutMs = readDuration(reader, m.get('handshake_timeout'), defaults.handshakeTimeoutMs);
  const count = (key: string, fallback: number, min: number) => {
    const f = m.get(key);
    return f ? reader.int(f, { min, max: MAX_CONNECTIONS_CEILING }) : fallback;
  };
  const maxConnections = count('max_connections', defaults.maxConnections, 1);
  const maxConnectionsPerPeer = count('max_connections_per_peer', defaults.maxConnectionsPerPeer, 0);
  if (
    headersTimeoutMs === undefined ||
    idleTimeoutMs === undefined ||
    bodyProgressTimeoutMs === undefined ||
    handshakeTimeoutMs === undefined ||
    maxConnections === undefined ||
    maxConnectionsPerPeer === undefined
  ) {
    return undefined;
  }
  return { headersTimeoutMs, idleTimeoutMs, bodyProgressTimeoutMs, handshakeTimeoutMs, maxConnections, maxConnectionsPerPeer };
}
