/**
 * Metrics of the operator controls: revocations, budgets, model-token usage and
 * admin actions. Registered on the sidecar's own registry. Agent labels are policy agent
 * names (bounded by the policy), never raw caller input.
 */
import client from 'prom-client';

export interface OperationsGauges {
  /** Revoked SPIFFE IDs by source, and whether a kill-all is in force. */
  revocations(): { local: number; shared: number; all: boolean };
  /** Spent and limit per budgeted agent for the current period. */
  budgets(): { agent: string; period: string; spentUsd: number; limitUsd: number }[];
}

export class OperationsMetrics {
  private readonly revocationChanges: client.Counter<'action'>;
  private readonly connectionsClosed: client.Counter<string>;
  private readonly spend: client.Counter<'agent' | 'source'>;
  private readonly refusals: client.Counter<'agent' | 'reason'>;
  private readonly tokens: client.Counter<'route' | 'kind'>;
  private readonly usageProblems: client.Counter<'route' | 'reason'>;
  private readonly adminActions: client.Counter<'action' | 'result'>;
  private readonly adminAuthFailures: client.Counter<'reason'>;

  constructor(registry: client.Registry, gauges: OperationsGauges) {
    const registers = [registry];
    this.revocationChanges = new client.Counter({
      name: 'attest_sidecar_revocation_changes_total',
      help: 'Revocation list changes, by action (revoke|revoke_all|restore|restore_all|shared_reload).',
      labelNames: ['action'],
      registers,
    });
    this.connectionsClosed = new client.Counter({
      name: 'attest_sidecar_revoked_connections_closed_total',
      help: 'Open inbound connections closed because their peer was revoked.',
      registers,
    });
    new client.Gauge({
      name: 'attest_sidecar_revoked_ids',
      help: 'SPIFFE IDs currently revoked, by source (local|shared).',
      labelNames: ['source'],
      registers,
      collect() {
        const counts = gauges.revocations();
        this.set({ source: 'local' }, counts.local);
        this.set({ source: 'shared' }, counts.shared);
      },
    });
    new client.Gauge({
      name: 'attest_sidecar_kill_all',
      help: '1 while a kill-all is in force (every peer refused, outbound stopped).',
      registers,
      collect() {
        this.set(gauges.revocations().all ? 1 : 0);
      },
    });
    this.spend = new client.Counter({
      name: 'attest_sidecar_budget_spend_usd_total',
      help: 'Spend charged to budgets, USD, by agent and source (action|metered).',
      labelNames: ['agent', 'source'],
      registers,
    });
    this.refusals = new client.Counter({
      name: 'attest_sidecar_budget_refusals_total',
      help: 'Requests refused by a budget, by agent and reason (budget_exceeded|budget_store_unavailable|...).',
      labelNames: ['agent', 'reason'],
      registers,
    });
    new client.Gauge({
      name: 'attest_sidecar_budget_spent_usd',
      help: 'Spent in the current budget period, USD.',
      labelNames: ['agent', 'period'],
      registers,
      collect() {
        this.reset();
        for (const b of gauges.budgets()) this.set({ agent: b.agent, period: b.period }, b.spentUsd);
      },
    });
    new client.Gauge({
      name: 'attest_sidecar_budget_limit_usd',
      help: 'Budget limit per period, USD.',
      labelNames: ['agent', 'period'],
      registers,
      collect() {
        this.reset();
        for (const b of gauges.budgets()) this.set({ agent: b.agent, period: b.period }, b.limitUsd);
      },
    });
    this.tokens = new client.Counter({
      name: 'attest_sidecar_model_tokens_total',
      help: 'Model API tokens metered on outbound routes, by route and kind (input|output).',
      labelNames: ['route', 'kind'],
      registers,
    });
    this.usageProblems = new client.Counter({
      name: 'attest_sidecar_model_usage_unmetered_total',
      help: 'Metered responses whose usage could not be read (the reservation was charged instead), by reason.',
      labelNames: ['route', 'reason'],
      registers,
    });
    this.adminActions = new client.Counter({
      name: 'attest_sidecar_admin_actions_total',
      help: 'Admin API mutations, by action and result (ok|error).',
      labelNames: ['action', 'result'],
      registers,
    });
    this.adminAuthFailures = new client.Counter({
      name: 'attest_sidecar_admin_auth_failures_total',
      help: 'Refused admin API attempts, by reason code.',
      labelNames: ['reason'],
      registers,
    });
  }

  revocationChange(action: string): void {
    this.revocationChanges.labels(action).inc();
  }
  revokedConnectionsClosed(n: number): void {
    if (n > 0) this.connectionsClosed.inc(n);
  }
  spent(agent: string, source: 'action' | 'metered', usd: number): void {
    if (usd > 0) this.spend.labels(agent, source).inc(usd);
  }
  budgetRefused(agent: string, reason: string): void {
    this.refusals.labels(agent, reason).inc();
  }
  tokensMetered(route: string, input: number, output: number): void {
    this.tokens.labels(route, 'input').inc(input);
    this.tokens.labels(route, 'output').inc(output);
  }
  usageUnmetered(route: string, reason: string): void {
    this.usageProblems.labels(route, reason).inc();
  }
  adminAction(action: string, ok: boolean): void {
    this.adminActions.labels(action, ok ? 'ok' : 'error').inc();
  }
  adminAuthFailed(reason: string): void {
    this.adminAuthFailures.labels(reason).inc();
  }
}
