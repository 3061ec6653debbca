/**
 * Revocation enforcement against a real revocation store and real metrics; the listeners are
 * recorders here (closing real connections is covered by test/e2e/kill-switch.test.ts).
 */
import client from 'prom-client';
import t from 'tap';
import { MemoryAuditSink } from '../../src/audit/record.js';
import { type Logger } from '../../src/lib/log.js';
import { OperationsMetrics } from '../../src/admin/operations-metrics.js';
import { RevocationStore } from '../../src/revocation/store.js';
import type { RevocationState } from '../../src/revocation/state.js';
import { applyRevocations, enforceRevocations, revocationCounts } from '../../src/revocation/enforce.js';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
const PEER = 'spiffe://example.org/agent';

function capture() {
  const lines: { level: string; obj: Record<string, unknown>; msg: string | undefined }[] = [];
  const at = (level: string) => (obj: Record<string, unknown>, msg?: string) => void lines.push({ level, obj, msg });
  return { lines, logger: { info: at('info'), warn: at('warn'), error: at('error') } as unknown as Logger };
}

async function metricValue(registry: client.Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = await registry.getSingleMetric(name)!.get();
  const found = metric.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return found?.value ?? 0;
}

function setup(closedPerChange: number) {
  const registry = new client.Registry();
  const metrics = new OperationsMetrics(registry, { revocations: () => ({ local: 0, shared: 0, all: false }), budgets: () => [] });
  const audit = new MemoryAuditSink();
  const log = capture();
  const seen: { closedFor: RevocationState[]; outboundTold: number } = { closedFor: [], outboundTold: 0 };
  const deps = {
    inbound: { closeRevoked: (s: RevocationState) => (seen.closedFor.push(s), closedPerChange) },
    outbound: { onRevocationChange: () => void seen.outboundTold++ },
    metrics,
    audit,
    logger: log.logger,
  };
  return { registry, audit, log, seen, deps };
}

t.test('a revocation closes the peer\'s connections, tells outbound, counts, audits and logs', async (t) => {
  const store = await RevocationStore.open({ logger: quiet });
  t.teardown(() => store.close());
  const { registry, audit, log, seen, deps } = setup(2);
  enforceRevocations(store, deps);
  await store.revoke(PEER, { reason: 'compromised', by: 'token' });
  t.equal(seen.closedFor.length, 1);
  t.ok(seen.closedFor[0]!.byId.has(PEER), 'inbound was given the state that revokes the peer');
  t.equal(seen.outboundTold, 1);
  t.equal(await metricValue(registry, 'attest_sidecar_revoked_connections_closed_total'), 2);
  t.equal(await metricValue(registry, 'attest_sidecar_revocation_changes_total', { action: 'revoke' }), 1);
  t.same(audit.records, [{ type: 'revocation', decision: 'deny', reason: 'revoked', target: PEER, detail: '1 revoked; 2 open connection(s) closed' }]);
  t.match(log.lines, [{ level: 'warn', msg: 'revocations changed', obj: { revoked_now: [PEER], kill_all: false, total: 1, connections_closed: 2 } }]);
});

t.test('a change that revokes no one is an update, audited as allow', async (t) => {
  const store = await RevocationStore.open({ logger: quiet });
  t.teardown(() => store.close());
  await store.revoke(PEER, { reason: 'test', by: 'token' });
  const { registry, audit, deps } = setup(0);
  applyRevocations(store.current(), [], deps);
  t.equal(await metricValue(registry, 'attest_sidecar_revocation_changes_total', { action: 'update' }), 1);
  t.equal(await metricValue(registry, 'attest_sidecar_revoked_connections_closed_total'), 0, 'nothing closed, nothing counted');
  t.same(audit.records, [{ type: 'revocation', decision: 'allow', reason: 'revocations_changed', detail: '1 revoked; 0 open connection(s) closed' }]);
});

t.test('kill-all shows in the audit detail and the log; absent listeners are fine', async (t) => {
  const store = await RevocationStore.open({ logger: quiet });
  t.teardown(() => store.close());
  const { audit, log, deps } = setup(0);
  enforceRevocations(store, { metrics: deps.metrics, audit: deps.audit, logger: deps.logger });
  await store.revokeAll({ reason: 'incident', by: 'token' });
  t.match(audit.records[0], { type: 'revocation', decision: 'deny', detail: /kill-all in force; 0 open connection\(s\) closed$/ });
  t.match(log.lines[0], { obj: { kill_all: true } });
});

t.test('revocationCounts splits local and shared and reports kill-all', async (t) => {
  const store = await RevocationStore.open({ logger: quiet });
  t.teardown(() => store.close());
  t.same(revocationCounts(store.current()), { local: 0, shared: 0, all: false });
  await store.revoke(PEER, { reason: 'x', by: 'token' });
  await store.revokeAll({ reason: 'y', by: 'token' });
  t.same(revocationCounts(store.current()), { local: 1, shared: 0, all: true });
});
