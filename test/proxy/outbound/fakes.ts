/**
 * Socket-free stand-ins for the outbound filters' unit tests: a request as node's parser hands
 * it over, a response that records what was sent, and a route built by the real builder.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { OutboundRouteConfig } from '../../../src/config/types.js';
import type { TlsMaterial } from '../../../src/spiffe/tls.js';
import { buildRouteRuntime, type RouteRuntime } from '../../../src/proxy/outbound-routes.js';
import { OutboundRequest } from '../../../src/proxy/outbound/context.js';
import { silentLogger } from '../../helpers/mesh.js';

export function fakeRequest(url: string, headers: Record<string, string> = {}, method = 'GET'): IncomingMessage {
  const rawHeaders = Object.entries(headers).flat();
  const lower: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) lower[k.toLowerCase()] = v;
  return { url, method, headers: lower, rawHeaders, complete: true } as unknown as IncomingMessage;
}

/** What a fake response was answered with. */
export interface Sent {
  status?: number;
  headers?: Record<string, unknown>;
  body?: string;
  keepAlive: boolean;
}

export function fakeResponse(req: IncomingMessage): { res: ServerResponse; sent: Sent } {
  const sent: Sent = { keepAlive: true };
  const res = {
    req,
    headersSent: false,
    get shouldKeepAlive() {
      return sent.keepAlive;
    },
    set shouldKeepAlive(v: boolean) {
      sent.keepAlive = v;
    },
    writeHead(status: number, headers: Record<string, unknown>) {
      sent.status = status;
      sent.headers = headers;
      this.headersSent = true;
      return this;
    },
    end(body: string) {
      sent.body = body;
    },
    destroy() {},
    once() {
      return this;
    },
  };
  return { res: res as unknown as ServerResponse, sent };
}

export function context(url: string, headers: Record<string, string> = {}, method = 'GET'): OutboundRequest {
  const req = fakeRequest(url, headers, method);
  return new OutboundRequest(req, fakeResponse(req).res, 0, 'req-1');
}

export function route(over: Partial<OutboundRouteConfig> = {}): RouteRuntime {
  const config: OutboundRouteConfig = {
    name: 'control-plane',
    upstream: 'https://127.0.0.1:8443',
    tls: 'spiffe',
    serverId: 'spiffe://td/server',
    injectHeaders: [],
    connectTimeoutMs: 1000,
    requestTimeoutMs: 1000,
    ...over,
  };
  return buildRouteRuntime(config, silentLogger());
}

export function material(over: Partial<TlsMaterial> = {}): TlsMaterial {
  return { generation: 1, ownId: 'spiffe://td/agent', notAfterMs: 2_000, spki: Buffer.from('spki'), ...over } as TlsMaterial;
}
