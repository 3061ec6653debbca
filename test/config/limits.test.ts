import t from 'tap';
import { ConfigFileError, parseConfig } from '../../src/config/load.js';
import { INBOUND_LIMIT_DEFAULTS, OUTBOUND_LIMIT_DEFAULTS } from '../../src/lib/listener-limits.js';

const DEV = 'identity: { source: dev, spiffe_id: spiffe://td/me }\n';

function messages(text: string): string[] {
  try {
    parseConfig(text, 'c.yaml', {});
  } catch (err) {
    if (err instanceof ConfigFileError) return err.problems.map((p) => `${p.line}:${p.column} ${p.key ?? ''}: ${p.message}`);
    throw err;
  }
  throw new Error('expected a ConfigFileError');
}

t.test('limits default when absent, and every key is read', async (t) => {
  const d = parseConfig(`${DEV}outbound: {}\ninbound: {}\npolicy: p.yaml\n`, 'c.yaml', {});
  t.strictSame(d.inbound!.limits, INBOUND_LIMIT_DEFAULTS);
  t.strictSame(d.outbound!.limits, OUTBOUND_LIMIT_DEFAULTS);
  t.ok(INBOUND_LIMIT_DEFAULTS.headersTimeoutMs > 0 && INBOUND_LIMIT_DEFAULTS.idleTimeoutMs > 0 && INBOUND_LIMIT_DEFAULTS.handshakeTimeoutMs > 0, 'every inbound timeout is bounded by default');
  t.ok(INBOUND_LIMIT_DEFAULTS.maxConnectionsPerPeer > 0 && INBOUND_LIMIT_DEFAULTS.maxConnectionsPerPeer < INBOUND_LIMIT_DEFAULTS.maxConnections, 'one peer cannot take every inbound connection by default');
  const c = parseConfig(
    `${DEV}outbound:\n  limits: { headers_timeout: 2s, idle_timeout: 500ms, body_progress_timeout: 1m, max_connections: 9 }\n` +
      `inbound:\n  limits: { headers_timeout: 3, idle_timeout: 4s, body_progress_timeout: 5s, handshake_timeout: 6s, max_connections: 70, max_connections_per_peer: 7 }\npolicy: p.yaml\n`,
    'c.yaml',
    {},
  );
  t.strictSame(c.outbound!.limits, { ...OUTBOUND_LIMIT_DEFAULTS, headersTimeoutMs: 2000, idleTimeoutMs: 500, bodyProgressTimeoutMs: 60000, maxConnections: 9 });
  t.strictSame(c.inbound!.limits, { headersTimeoutMs: 3000, idleTimeoutMs: 4000, bodyProgressTimeoutMs: 5000, handshakeTimeoutMs: 6000, maxConnections: 70, maxConnectionsPerPeer: 7 });
  const off = parseConfig(`${DEV}inbound:\n  limits: { max_connections_per_peer: 0 }\npolicy: p.yaml\n`, 'c.yaml', {});
  t.equal(off.inbound!.limits.maxConnectionsPerPeer, 0, '0 turns the per-peer cap off');
});

t.test('invalid limits name the key', async (t) => {
  t.match(messages(`${DEV}inbound:\n  limits: { idle_timeout: 0 }\npolicy: p.yaml\n`), [/inbound\.limits\.idle_timeout: must be greater than zero/]);
  t.match(messages(`${DEV}inbound:\n  limits: { max_connections: 0 }\npolicy: p.yaml\n`), [/inbound\.limits\.max_connections: must be at least 1/]);
  t.match(messages(`${DEV}inbound:\n  limits: { max_connections: 2.5 }\npolicy: p.yaml\n`), [/must be an integer/]);
  t.match(messages(`${DEV}inbound:\n  limits: { headers_timeout: soon }\npolicy: p.yaml\n`), [/invalid duration 'soon'/]);
  // Outbound callers are local processes without an identity, and the listener speaks no TLS.
  t.match(messages(`${DEV}outbound:\n  limits: { max_connections_per_peer: 3, handshake_timeout: 1s }\n`), [/max_connections_per_peer/, /handshake_timeout/]);
});
