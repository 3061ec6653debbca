import t from 'tap';
import { AUDIT_FIELDS, auditMembers } from '../../src/audit/format.js';
import type { AuditFields, AuditRecord } from '../../src/audit/record.js';

/** One record of every kind, with every field that kind has. */
const ONE_OF_EACH: AuditRecord[] = [
  { type: 'inbound_decision', decision: 'deny', reason: 'action_not_permitted', peer: 'spiffe://td/a', method: 'POST', path: '/x', action: 'a.b', route: 'r', status: 403, latency_ms: 0.25, request_id: 'id-1' },
  { type: 'outbound_decision', decision: 'allow', reason: 'forwarded', route: 'r', method: 'GET', path: '/y', status: 200, latency_ms: 1 },
  { type: 'peer_rejected', decision: 'deny', reason: 'svid_expired', peer: 'spiffe://td/a', detail: 'expired', remote: '10.0.0.1', count: 3 },
  { type: 'connection_refused', decision: 'deny', reason: 'connection_limit', detail: 'full', remote: '10.0.0.2', count: 1 },
  { type: 'revocation', decision: 'deny', reason: 'revoked', target: 'spiffe://td/a spiffe://td/b', detail: '2 revoked' },
  { type: 'budget', decision: 'deny', reason: 'budget_exceeded', agent: 'orchestrator', peer: 'spiffe://td/a', action: 'a.b', route: 'r', amount_usd: 0.5, spent_usd: 4.75, limit_usd: 5, detail: 'over' },
  { type: 'admin_action', decision: 'allow', reason: 'revoke', action: 'revoke', principal: 'token', target: 'spiffe://td/a', detail: 'd', remote: '127.0.0.1' },
  { type: 'admin_auth_failed', decision: 'deny', reason: 'admin_not_listed', peer: 'spiffe://td/x', action: 'revoke', remote: '10.0.0.3' },
  { type: 'audit_chain_start', decision: 'allow', reason: 'chain_genesis', detail: 'chain c: new chain' },
  { type: 'audit_tail_repaired', decision: 'error', reason: 'torn_tail', detail: 'dropped 3 bytes' },
];

t.test('every kind is written as JSON.stringify writes its fields in the fixed order', async (t) => {
  for (const r of ONE_OF_EACH) {
    const fields: AuditFields = r;
    const ordered: Record<string, unknown> = {};
    for (const k of AUDIT_FIELDS) if (fields[k] !== undefined) ordered[k] = fields[k];
    t.equal(`{${auditMembers(r)}}`, JSON.stringify(ordered), r.type);
    t.same(JSON.parse(`{${auditMembers(r)}}`), r, `${r.type}: every field written`);
  }
});

t.test('a kind carries only its own fields (checked by the compiler)', async (t) => {
  const wrong: AuditRecord[] = [
    // @ts-expect-error a refused TLS peer has no HTTP status
    { type: 'peer_rejected', decision: 'deny', reason: 'svid_expired', detail: 'x', status: 403 },
    // @ts-expect-error a budget record names its agent
    { type: 'budget', decision: 'deny', reason: 'budget_exceeded', detail: 'x' },
    // @ts-expect-error an admin action names its principal
    { type: 'admin_action', decision: 'allow', reason: 'revoke', action: 'revoke' },
    // @ts-expect-error a request decision has no agent
    { type: 'inbound_decision', decision: 'allow', reason: 'allowed', agent: 'a' },
    // @ts-expect-error an aggregated connection refusal is never allowed
    { type: 'connection_refused', decision: 'allow', reason: 'connection_limit', detail: 'x', count: 1 },
  ];
  t.equal(wrong.length, 5);
});
