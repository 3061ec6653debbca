/**
 * Stand-ins for the node request, response and TLS socket, so the inbound filters can be driven
 * without sockets: the response records what was sent, the socket carries the connection state
 * the listener would have put there at the handshake.
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { InboundContext, kConnection, newConnection, type Connection, type PeeredSocket } from '../../../src/proxy/inbound/context.js';
import { screenInboundHeaders, tooManyHeadersRefusal } from '../../../src/proxy/request-headers.js';
import type { VerifiedPeer } from '../../../src/spiffe/tls.js';
import { RevocationState } from '../../../src/revocation/state.js';

export const PEER_ID = 'spiffe://mesh.local/orchestrator';
export const NOW = 1_800_000_000_000;
export const MAX_HEADERS = 20;

export function peer(id = PEER_ID, notAfterMs = NOW + 3_600_000): VerifiedPeer {
  return {
    id,
    trustDomain: 'mesh.local',
    notAfterMs,
    leafSha256Hex: 'ab'.repeat(32),
    serial: '01',
    spki: Buffer.from('spki'),
    spkiSha256Hex: 'cd'.repeat(32),
    extensions: new Map(),
  };
}

export function connection(p: VerifiedPeer = peer()): Connection {
  return newConnection(p);
}

export interface SentResponse {
  status?: number;
  headers?: Record<string, string | number>;
  body?: string;
  destroyed: boolean;
}

export type FakeResponse = ServerResponse & { sent: SentResponse };

export interface RequestShape {
  method?: string;
  url?: string;
  /** Raw header pairs (name, value, ...). */
  raw?: string[];
  /** Request complete (body read): refusals keep the connection. */
  complete?: boolean;
  conn?: Connection;
}

/** A context as the listener makes it for a request of `shape` on a connection of `shape.conn`. */
export function context(shape: RequestShape = {}): InboundContext & { res: FakeResponse } {
  const raw = shape.raw ?? ['host', 'app'];
  const headers: Record<string, string> = Object.create(null) as Record<string, string>;
  for (let i = 0; i < raw.length; i += 2) headers[raw[i]!.toLowerCase()] = raw[i + 1]!;
  const socket = Object.assign(new EventEmitter(), { destroyed: false, remoteAddress: '10.0.0.7' }) as unknown as PeeredSocket;
  if (shape.conn) socket[kConnection] = shape.conn;
  const req = Object.assign(new EventEmitter(), {
    method: shape.method ?? 'GET',
    url: shape.url ?? '/agents',
    headers,
    rawHeaders: raw,
    socket,
    complete: shape.complete ?? true,
  }) as unknown as IncomingMessage;
  const sent: SentResponse = { destroyed: false };
  const res = Object.assign(new EventEmitter(), {
    req,
    sent,
    headersSent: false,
    shouldKeepAlive: true,
    writeHead(status: number, h: Record<string, string | number>) {
      sent.status = status;
      sent.headers = h;
      (res as { headersSent: boolean }).headersSent = true;
      return res;
    },
    end(body?: string) {
      sent.body = body;
      res.emit('finish');
      res.emit('close');
    },
    destroy() {
      sent.destroyed = true;
    },
  }) as unknown as FakeResponse;
  const lead = shape.conn ? ['x-spiffe-id', shape.conn.peer.id] : [];
  const screen = screenInboundHeaders(raw, MAX_HEADERS, tooManyHeadersRefusal(MAX_HEADERS), lead);
  const ctx = new InboundContext(req, res, socket, screen, { requestTimeoutMs: 30_000, bodyProgressTimeoutMs: 10_000, servername: 'app' });
  return ctx as InboundContext & { res: FakeResponse };
}

/** A revocation state that revokes `ids`. */
export function revoked(...ids: string[]): RevocationState {
  const byId = new Map(ids.map((id) => [id, { spiffeId: id, reason: 'test', at: new Date(NOW).toISOString(), by: 'token', source: 'local' as const }]));
  return RevocationState.merge(1, [{ all: undefined, byId }]);
}
