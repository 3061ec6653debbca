/**
 * What a new mTLS connection costs, measured side by side against the two inbound listeners:
 * a client with the agent's certificate connects, sends one request (`Connection: close`) and
 * reads the response to its end. The throughput runs reuse pooled connections (load.ts), so
 * this is where the cost of a reconnecting peer shows: a full handshake on both, and for the
 * bare listener also a resumed one (the sidecar refuses resumption, so a resumed connection
 * gets the full handshake there; measured too, as proof).
 *
 * Variants run in turn within each iteration, so drifts in background load hit all alike.
 */
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { median } from './lib.js';
import { BENCH_PATH, ROUTE, type BenchFiles } from './setup.js';

export interface ConnectionCost {
  listener: 'bare' | 'sidecar';
  /** A TLS session from the previous connection was offered. */
  sessionOffered: boolean;
  /** Connections the server resumed, of those made. */
  resumed: number;
  connections: number;
  medianMs: number;
}

const REQUEST = Buffer.from(`GET ${BENCH_PATH} HTTP/1.1\r\nHost: ${ROUTE}\r\nConnection: close\r\n\r\n`);

/** One connection, one request; resolves with the elapsed ms, whether it resumed and the new session. */
function oneRequest(port: number, ctx: tls.SecureContext, session: Buffer | undefined): Promise<{ ms: number; resumed: boolean; session?: Buffer }> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let next: Buffer | undefined;
    let head = '';
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      secureContext: ctx,
      rejectUnauthorized: true,
      // SVIDs carry no DNS names: the chain is checked against the bundle, the name is not.
      checkServerIdentity: () => undefined,
      ...(session ? { session } : {}),
    });
    socket.setTimeout(10_000, () => socket.destroy(new Error('connection-cost: timed out')));
    socket.on('session', (s: Buffer) => (next = s));
    socket.once('secureConnect', () => socket.write(REQUEST));
    socket.on('data', (chunk: Buffer) => {
      if (head.length < 16) head += chunk.toString('latin1');
    });
    socket.once('error', reject);
    socket.once('end', () => {
      const ms = performance.now() - start;
      const resumed = socket.isSessionReused();
      socket.destroy();
      if (!head.startsWith('HTTP/1.1 200')) return reject(new Error(`connection-cost: port ${port} answered ${JSON.stringify(head.slice(0, 12))}`));
      resolve({ ms, resumed, ...(next ? { session: next } : {}) });
    });
  });
}

export async function measureConnectionCost(f: BenchFiles, iterations: number): Promise<ConnectionCost[]> {
  const ctx = tls.createSecureContext({
    cert: readFileSync(f.agentCert),
    key: readFileSync(f.agentKey),
    ca: readFileSync(f.bundle),
    minVersion: 'TLSv1.2',
  });
  const variants = [
    { listener: 'bare' as const, port: f.ports.refInbound, sessionOffered: false },
    { listener: 'bare' as const, port: f.ports.refInbound, sessionOffered: true },
    { listener: 'sidecar' as const, port: f.ports.serviceInbound, sessionOffered: false },
    { listener: 'sidecar' as const, port: f.ports.serviceInbound, sessionOffered: true },
  ].map((v) => ({ ...v, samples: [] as number[], resumed: 0, session: undefined as Buffer | undefined }));
  for (let i = -20; i < iterations; i++) {
    for (const v of variants) {
      const r = await oneRequest(v.port, ctx, v.sessionOffered ? v.session : undefined);
      if (r.session) v.session = r.session;
      if (i < 0) continue; // warm-up: JIT, and a first session to offer
      v.samples.push(r.ms);
      if (r.resumed) v.resumed++;
    }
  }
  return variants.map((v) => ({
    listener: v.listener,
    sessionOffered: v.sessionOffered,
    resumed: v.resumed,
    connections: v.samples.length,
    medianMs: median(v.samples),
  }));
}
