/** The chain's ends without forwarding: refusals answered and recorded, the turn given back once. */
import t from 'tap';
import { createLogger } from '../../../src/log.js';
import { MemoryAuditSink } from '../../../src/audit/record.js';
import { DecisionLog, type Direction } from '../../../src/proxy/decision-log.js';
import { InboundRouter } from '../../../src/proxy/inbound/router.js';
import { PeerAdmission, DEFAULT_PEER_ADMISSION } from '../../../src/proxy/peer-admission.js';
import { refuse, refusal, type Refusal } from '../../../src/reasons.js';
import type { Dispatcher } from 'undici';
import { connection, context, PEER_ID } from './fakes.js';

function router() {
  const audit = new MemoryAuditSink();
  const counted: string[] = [];
  const metrics = {
    request: (d: Direction, decision: string, reason: string) => void counted.push(`${d} ${decision} ${reason}`),
    upstreamError: () => undefined,
  };
  const admission = new PeerAdmission(256, { ...DEFAULT_PEER_ADMISSION, maxInFlightPerPeer: 1 });
  const log = new DecisionLog('inbound', metrics, audit);
  const r = new InboundRouter({} as Dispatcher, admission, log, metrics, createLogger({ level: 'silent' }));
  return { r, audit, counted, admission };
}

t.test('refusals: status, body, headers, keep-alive, audit record and metric', async (t) => {
  const cases: [string, Refusal, Record<string, string>, boolean][] = [
    ['plain denial', refusal('no_policy'), {}, true],
    ['closes the connection', refusal('agent_revoked'), {}, false],
    ['challenge header', refuse('attestation_required', 'Attestation required', { 'attest-challenge': 'evidence' }), { 'attest-challenge': 'evidence' }, true],
    ['internal error', refusal('internal_error'), {}, true],
  ];
  for (const [name, r, headers, keepAlive] of cases) {
    const { r: ends, audit, counted } = router();
    const ctx = context({ conn: connection() });
    ctx.action = 'list';
    ends.refuse(ctx, r);
    t.equal(ctx.res.sent.status, r.status, name);
    t.equal(ctx.res.sent.body, r.body, name);
    t.match(ctx.res.sent.headers, { 'content-type': 'application/json', ...headers }, name);
    t.equal(ctx.res.shouldKeepAlive, keepAlive, `${name}: keep-alive`);
    t.match(audit.records, [{ type: 'inbound_decision', decision: r.decision, reason: r.reason, status: r.status, peer: PEER_ID, action: 'list', request_id: ctx.requestId }], name);
    t.strictSame(counted, [`inbound ${r.decision} ${r.reason}`], name);
  }
});

t.test('the admission turn goes back exactly once', async (t) => {
  const { r: ends, admission } = router();
  const conn = connection();
  const ctx = context({ conn });
  ctx.slots = conn.slots = admission.attach(conn.peer.id);
  t.ok(admission.tryAcquire(ctx.slots));
  ctx.holdsTurn = true;
  ends.refuse(ctx, refusal('budget_exceeded'));
  t.equal(ctx.holdsTurn, false);
  t.equal(ctx.slots.inFlight, 0, 'released');
  ends.fail(ctx, new Error('late bug'));
  t.equal(ctx.slots.inFlight, 0, 'not released twice');
  t.ok(admission.tryAcquire(ctx.slots), 'the share is usable again');
});

t.test('a failure answers 500 once the response has not started, else cuts it', async (t) => {
  const { r: ends, audit } = router();
  const ctx = context({ conn: connection() });
  ends.fail(ctx, new Error('bug'));
  t.equal(ctx.res.sent.status, 500);
  t.equal(ctx.res.sent.body, '{"error":"Internal error"}');
  t.match(audit.records, [{ decision: 'error', reason: 'internal_error', status: 500 }]);
  ends.fail(ctx, new Error('bug after the answer'));
  t.equal(ctx.res.sent.destroyed, true, 'a started response is destroyed, never answered twice');
});
