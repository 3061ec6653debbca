/**
 * `inbound.limits` / `outbound.limits`: how long a client connection may sit idle or take to
 * send its request, and how many connections a listener holds (in total, and per verified peer
 * identity on the inbound side). Every value has a bound by default: a connection that sends
 * nothing, or trickles, is closed, and a flood of connections cannot use up the process's file
 * descriptors (which would make every port of the sidecar unreachable).
 */
import { readDuration } from '../lib/fields.js';
import type { Field, YamlReader } from '../lib/yaml-reader.js';
import { INBOUND_LIMIT_DEFAULTS, OUTBOUND_LIMIT_DEFAULTS, type ListenerLimits } from '../lib/listener-limits.js';

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
