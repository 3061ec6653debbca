/**
 * The admin API's mutations (kill switch) and their read side:
 *   GET  /v1/revocations
 *   POST /v1/kill     {"spiffe_id": "...", "reason": "..."}
 *   POST /v1/killall  {"reason": "..."}
 *   POST /v1/restore  {"spiffe_id": "..."} | {"all": true}
 * Every mutation is authenticated (bearer token from loopback, or an mTLS admin listed in the
 * policy), audited and counted; failed attempts are throttled by the authenticator. Requests a
 * browser sent for another page are refused before authentication (browser-guard.ts).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AdminAuthenticator } from './auth.js';
import type { RevocationStore } from '../revocation/store.js';
import type { RevocationEntry, RevocationState } from '../revocation/state.js';
import type { AuditSink } from '../audit/record.js';
import type { Logger } from '../lib/log.js';
import { SidecarError, errorMessage } from '../errors.js';
import { READ_METHODS, adminRefusal, methodNotAllowed, sendJson, sendRefusal } from './json.js';
import { BROWSER_REFUSED_REASON, browserRefusal } from './browser-guard.js';

const MAX_BODY_BYTES = 16 * 1024;
const MUTATIONS = new Set(['/v1/kill', '/v1/killall', '/v1/restore']);
const MUTATION_METHODS = { allow: 'POST' };

/** What the API counts: mutations by result, and refused attempts by reason. */
export interface AdminApiMetrics {
  adminAction(action: string, ok: boolean): void;
  adminAuthFailed(reason: string): void;
}

export interface AdminApiDeps {
  auth: AdminAuthenticator;
  revocations: RevocationStore;
  operationsMetrics: AdminApiMetrics;
  audit: AuditSink;
  logger: Logger;
}

export class AdminApi {
  constructor(private readonly deps: AdminApiDeps) {}

  /** True when `path` belongs to this API (the caller then awaits `handle`). */
  owns(path: string): boolean {
    return path === '/v1/revocations' || MUTATIONS.has(path);
  }

  async handle(req: IncomingMessage, res: ServerResponse, path: string, peerSpiffeId?: string): Promise<void> {
    if (path === '/v1/revocations') {
      if (req.method !== 'GET' && req.method !== 'HEAD') return sendRefusal(res, methodNotAllowed(req.method, READ_METHODS));
      return sendJson(res, 200, revocationsJson(this.deps.revocations.current()));
    }
    if (req.method !== 'POST') return sendRefusal(res, methodNotAllowed(req.method, MUTATION_METHODS));
    const action = path.slice('/v1/'.length);
    const remote = req.socket.remoteAddress;
    const scheme = peerSpiffeId !== undefined ? 'https' : 'http';
    const browser = browserRefusal(req.headers, `${scheme}://${req.headers.host ?? ''}`);
    if (browser !== undefined) {
      // Before authentication and not a failed attempt: a page cannot feed the throttle.
      this.deps.operationsMetrics.adminAuthFailed(BROWSER_REFUSED_REASON);
      this.deps.audit.record({ type: 'admin_auth_failed', decision: 'deny', reason: BROWSER_REFUSED_REASON, action, ...(remote ? { remote } : {}) });
      req.resume();
      return sendRefusal(res, adminRefusal(BROWSER_REFUSED_REASON, browser, { namesReason: true }));
    }
    const auth = this.deps.auth.authenticate({
      ...(req.headers.authorization !== undefined ? { authorization: req.headers.authorization } : {}),
      ...(remote !== undefined ? { remoteAddress: remote } : {}),
      ...(peerSpiffeId !== undefined ? { peerSpiffeId } : {}),
    });
    if (!auth.ok) {
      this.deps.operationsMetrics.adminAuthFailed(auth.reason);
      this.deps.audit.record({
        type: 'admin_auth_failed',
        decision: 'deny',
        reason: auth.reason,
        action,
        ...(remote ? { remote } : {}),
        ...(peerSpiffeId ? { peer: peerSpiffeId } : {}),
      });
      req.resume();
      return sendRefusal(res, auth);
    }
    let body: Record<string, unknown>;
    try {
      body = await readJsonBody(req);
    } catch (err) {
      return sendRefusal(res, adminRefusal('admin_body_invalid', errorMessage(err)));
    }
    const by = auth.principal;
    try {
      const result = await this.mutate(action, body, by);
      this.deps.operationsMetrics.adminAction(action, true);
      this.deps.audit.record({ type: 'admin_action', decision: 'allow', reason: action, action, principal: by, ...(result.target ? { target: result.target } : {}), ...(remote ? { remote } : {}) });
      sendJson(res, 200, { ok: true, ...result.body, revocations: revocationsJson(this.deps.revocations.current()) });
    } catch (err) {
      const reason = err instanceof SidecarError ? err.reason : 'admin_action_failed';
      this.deps.operationsMetrics.adminAction(action, false);
      this.deps.audit.record({ type: 'admin_action', decision: 'error', reason, action, principal: by, detail: errorMessage(err), ...(remote ? { remote } : {}) });
      this.deps.logger.warn({ action, principal: by, reason, err: errorMessage(err) }, 'admin action failed');
      // Validation problems are the caller's (400); a failed durable write is ours (500: the change
      // still holds in memory); a shared file's revocation is lifted there (409). See adminRefusal.
      sendRefusal(res, adminRefusal(reason, errorMessage(err), { namesReason: true }));
    }
  }

  private async mutate(action: string, body: Record<string, unknown>, by: string): Promise<{ target?: string; body: Record<string, unknown> }> {
    const store = this.deps.revocations;
    const reason = body.reason === undefined ? `${action} via admin API` : body.reason;
    if (typeof reason !== 'string') throw new SidecarError('admin_bad_request', "'reason' must be a string");
    switch (action) {
      case 'kill': {
        const id = requireId(body);
        const entry = await store.revoke(id, { reason, by });
        return { target: id, body: { revoked: entryJson(entry) } };
      }
      case 'killall': {
        const entry = await store.revokeAll({ reason, by });
        return { target: '*', body: { revoked: entryJson(entry) } };
      }
      case 'restore': {
        if (body.all === true) return { target: '*', body: { restored: await store.restoreAll() } };
        const id = requireId(body);
        return { target: id, body: { restored: await store.restore(id) } };
      }
    }
    throw new SidecarError('admin_bad_request', `unknown action ${action}`);
  }
}

function requireId(body: Record<string, unknown>): string {
  const id = body.spiffe_id;
  if (typeof id !== 'string' || !id) throw new SidecarError('admin_bad_request', "'spiffe_id' (a SPIFFE ID string) is required");
  return id;
}

async function readJsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const type = req.headers['content-type'] ?? '';
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new Error(`request body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(c as Buffer);
  }
  if (size === 0) return {};
  if (!/^application\/json\b/i.test(type)) throw new Error("send the body as 'content-type: application/json'");
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new Error(`request body is not valid JSON: ${errorMessage(err)}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('request body must be a JSON object');
  return parsed as Record<string, unknown>;
}

export function entryJson(entry: RevocationEntry): Record<string, string> {
  return { spiffe_id: entry.spiffeId, reason: entry.reason, at: entry.at, by: entry.by, source: entry.source };
}

export function revocationsJson(state: RevocationState): { all: Record<string, string> | null; entries: Record<string, string>[] } {
  return { all: state.all ? entryJson(state.all) : null, entries: [...state.byId.values()].map(entryJson) };
}
