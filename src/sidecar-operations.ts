/**
 * Durable operator state: the state directory (0700), revocations (local + shared lists), the
 * budget store, and the admin token (created when missing). Any of them unreadable is fatal at
 * start: a sidecar must not serve with revocations or spend silently dropped.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { SidecarError, errorMessage } from './errors.js';
import type { SidecarConfig } from './config/types.js';
import type { Logger } from './lib/log.js';
import { createAdminTokenFile } from './admin/auth.js';
import { RevocationStore } from './revocation/store.js';
import type { BudgetStore } from './budget/store.js';
import type { BudgetLedger, BudgetStatus } from './budget/ledger.js';
import type { PolicyAgent } from './policy/read-agent.js';
import type { Disposer } from './lib/disposer.js';
import { ensureStateDir, unwritableFileError } from './startup-errors.js';

export interface OperationsParts {
  revocations: RevocationStore;
  budgetStore: BudgetStore;
  adminToken: string | undefined;
}

/** Opens the operator state; each store is registered on `parts` as it opens. */
export async function openOperations(config: SidecarConfig, logger: Logger, parts: Disposer): Promise<OperationsParts> {
  ensureStateDir(config.stateDir);
  const revocations = parts.add(
    await RevocationStore.open({ stateFile: path.join(config.stateDir, 'revocations.json'), sharedFiles: config.revocations.sharedFiles, logger }),
    (store) => store.close(),
  );
  const budgetStore = parts.add(await openBudgetStore(config, logger), (store) => store.close());
  const tokenFile = config.admin?.tokenFile;
  const adminToken = tokenFile ? await createAdminTokenFile(tokenFile).catch((err: unknown) => Promise.reject(unwritableFileError('admin_token_unreadable', 'admin token file', tokenFile, err))) : undefined;
  return { revocations, budgetStore, adminToken };
}

/** The store `budget.store` names, loaded on demand (a file-store sidecar carries no Redis client). */
async function openBudgetStore(config: SidecarConfig, logger: Logger): Promise<BudgetStore> {
  if (config.budget.store === 'redis') {
    const { RedisBudgetStore } = await import('./budget/redis-store.js');
    const password = config.budget.passwordFile === undefined ? undefined : await readRedisPassword(config.budget.passwordFile);
    return RedisBudgetStore.open({ url: config.budget.url, keyPrefix: config.budget.keyPrefix, timeoutMs: config.budget.timeoutMs, logger, ...(password !== undefined ? { password } : {}) });
  }
  const { FileBudgetStore } = await import('./budget/file-store.js');
  const store = await FileBudgetStore.open(path.join(config.stateDir, 'budget'), { logger });
  if (store.repairedBytes > 0) logger.warn({ bytes: store.repairedBytes }, 'budget journal: torn last record dropped on start');
  return store;
}

/** The Redis AUTH password from its secret file (one line; the trailing newline a Secret mount or an editor adds is not part of it). */
async function readRedisPassword(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new SidecarError('budget_store_config', `cannot read budget.redis.password_file ${file}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`, { cause: err });
  }
  const password = text.replace(/\r?\n$/, '');
  if (password === '' || /[\r\n]/.test(password)) {
    throw new SidecarError('budget_store_config', `budget.redis.password_file ${file} must hold the password on one line`);
  }
  return password;
}

/** Spent and limit of every agent the policy budgets, for the current period. */
export function budgetRows(ledger: BudgetLedger, policy: { current(): { agents: readonly unknown[] } | undefined } | undefined): BudgetStatus[] {
  const agents = (policy?.current()?.agents ?? []) as readonly PolicyAgent[];
  return ledger.snapshot(agents.map((a) => ({ name: a.name, budget: a.budget })));
}

/** The budget gauges' rows (OperationsGauges.budgets). */
export function budgetGauge(ledger: BudgetLedger, policy: Parameters<typeof budgetRows>[1]): () => { agent: string; period: string; spentUsd: number; limitUsd: number }[] {
  return () => budgetRows(ledger, policy).map((b) => ({ agent: b.agent, period: b.period, spentUsd: b.spent_usd, limitUsd: b.limit_usd }));
}
