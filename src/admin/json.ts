/** JSON responses of the admin listener (status, errors, API results): never cached. */
import type { ServerResponse } from 'node:http';
import { REASONS, type ReasonCode, type Refusal } from '../reasons.js';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  send(res, status, adminJson(body), headers);
}

/** Answers with a refusal built by adminRefusal. */
export function sendRefusal(res: ServerResponse, refusal: Refusal): void {
  send(res, refusal.status, refusal.body, refusal.headers ?? {});
}

/**
 * A refusal of the admin listener: the catalogue's status of `reason` (400 for a code of another
 * kind, which only an admin action's failure can carry: the caller's input was refused), and the
 * body in the admin listener's JSON format; `namesReason` adds the code to the body.
 */
export function adminRefusal(reason: ReasonCode, error: string, opts: { headers?: Readonly<Record<string, string>>; namesReason?: boolean } = {}): Refusal {
  const spec: { kind: string; status?: number; decision?: 'deny' | 'error'; close?: boolean } = REASONS[reason];
  const status = spec.kind === 'admin' || spec.kind === 'request' ? (spec.status ?? 400) : 400;
  return Object.freeze({
    reason,
    status,
    error,
    body: adminJson(opts.namesReason ? { error, reason } : { error }),
    close: spec.close ?? false,
    decision: spec.decision ?? 'deny',
    ...(opts.headers ? { headers: opts.headers } : {}),
  });
}

/** The Allow header of the read-only endpoints. */
export const READ_METHODS: Readonly<Record<string, string>> = { allow: 'GET, HEAD' };

/** 405 for `method`, naming the methods the endpoint serves. */
export function methodNotAllowed(method: string | undefined, allow: Readonly<Record<string, string>>): Refusal {
  return adminRefusal('admin_method_not_allowed', `Method ${method} not allowed`, { headers: allow });
}

function adminJson(body: unknown): string {
  return JSON.stringify(body, null, 2) + '\n';
}

function send(res: ServerResponse, status: number, text: string, headers: Readonly<Record<string, string>>): void {
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}
