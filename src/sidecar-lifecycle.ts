/**
 * The sidecar's answers to the pod lifecycle's signals: a bounded drain of its listeners
 * (SIGTERM) and a reload of every part that reads files (SIGHUP). Each reload keeps the part's
 * own rule for a bad file (the policy, revocation lists, reference values and file identity
 * keep their last good state; a secret file that turns unusable stops its route) and is logged
 * and audited once per part.
 */
import { errorMessage } from './errors.js';
import type { AuditSink } from './audit/record.js';
import type { Logger } from './lib/log.js';
import type { PolicyWatcher } from './policy/watch.js';
import type { RevocationStore } from './revocation/store.js';
import type { ReferenceValueStore } from './attestation/reference-values.js';
import type { X509Source } from './spiffe/source.js';
import type { OutboundProxy } from './proxy/outbound/proxy.js';

/** A listener that can stop accepting, let its requests finish, and cut what is left. */
export interface Drainable {
  drain(): Promise<void>;
  cutDrain(): number;
}

export interface DrainResult {
  /** Requests still in progress at the deadline, cut. */
  cut: number;
  timedOut: boolean;
}

/** Drains every listener at once; at `timeoutMs` cuts what is still open. */
export async function drainListeners(listeners: readonly Drainable[], timeoutMs: number): Promise<DrainResult> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
  const drained = Promise.all(listeners.map((l) => l.drain())).then(() => 'drained' as const);
  const outcome = await Promise.race([drained, deadline]);
  clearTimeout(timer);
  if (outcome === 'drained') return { cut: 0, timedOut: false };
  let cut = 0;
  for (const l of listeners) cut += l.cutDrain();
  return { cut, timedOut: true };
}

/** What SIGHUP can reload; absent parts are skipped. */
export interface ReloadTargets {
  policy: PolicyWatcher | undefined;
  outbound: OutboundProxy | undefined;
  revocations: RevocationStore;
  referenceValues: ReferenceValueStore | undefined;
  /** The identity source; only a files source (`reloadFiles`) has anything to re-read. */
  source: X509Source | undefined;
}

export interface ReloadOutcome {
  part: 'policy' | 'credentials' | 'revocations' | 'reference_values' | 'identity_files';
  decision: 'allow' | 'error';
  reason: string;
  detail: string;
}

type Reloader = (t: ReloadTargets) => Promise<ReloadOutcome | undefined>;

/** Runs `reload`, catching the 'error' events `emitter` reports meanwhile (a rejected file). */
async function withErrors<T>(emitter: { on(e: 'error', l: (err: Error & { reason?: string }) => void): unknown; off(e: 'error', l: (err: Error) => void): unknown }, reload: () => T | Promise<T>): Promise<{ value: T; error: (Error & { reason?: string }) | undefined }> {
  let error: (Error & { reason?: string }) | undefined;
  const onError = (err: Error & { reason?: string }) => (error ??= err);
  emitter.on('error', onError);
  try {
    return { value: await reload(), error };
  } finally {
    emitter.off('error', onError);
  }
}

const ok = (part: ReloadOutcome['part'], changed: boolean, detail: string): ReloadOutcome => ({ part, decision: 'allow', reason: changed ? 'reloaded' : 'reload_unchanged', detail });
const rejected = (part: ReloadOutcome['part'], err: Error & { reason?: string }, fallback: string, kept: string): ReloadOutcome => ({ part, decision: 'error', reason: err.reason ?? fallback, detail: `rejected (${errorMessage(err).slice(0, 300)}); ${kept}` });

/** The parts in the order they are reloaded: a table, so that a new reloadable part is one row. */
const RELOADERS: readonly [ReloadOutcome['part'], Reloader][] = [
  ['policy', async ({ policy }) => {
    if (!policy) return undefined;
    const { value: swapped, error } = await withErrors(policy, () => policy.reloadInBackground());
    const version = policy.current()?.version;
    if (error) return rejected('policy', error, 'policy_invalid', `keeping version ${version}`);
    return ok('policy', swapped, swapped ? `reloaded, version ${version}` : `unchanged, version ${version}`);
  }],
  ['credentials', async ({ outbound }) => {
    const secrets = outbound?.reloadSecrets();
    if (!secrets || secrets.reread === 0) return undefined;
    if (secrets.unusable.length) return { part: 'credentials', decision: 'error', reason: secrets.unusable[0]!.reason, detail: `unusable: ${secrets.unusable.map((u) => u.what).join(', ')} (refused until fixed)` };
    return ok('credentials', true, `re-read ${secrets.reread} secret file set(s)`);
  }],
  ['revocations', async ({ revocations }) => {
    if (revocations.sharedFiles.length === 0) return undefined;
    const { value: changed, error } = await withErrors(revocations, () => revocations.reloadShared());
    if (error) return rejected('revocations', error, 'revocations_unreadable', 'keeping the last good content of the rejected file');
    return ok('revocations', changed, `${changed ? 'changed' : 'unchanged'}, ${revocations.current().size} revoked`);
  }],
  ['reference_values', async ({ referenceValues }) => {
    if (!referenceValues) return undefined;
    const { value: changed, error } = await withErrors(referenceValues, () => referenceValues.reload());
    if (error) return rejected('reference_values', error, 'reference_values_invalid', 'keeping the last good values');
    return ok('reference_values', changed, `${changed ? 'reloaded' : 'unchanged'}, version ${referenceValues.version()}`);
  }],
  ['identity_files', async ({ source }) => {
    const files = source as (X509Source & { reloadFiles?: () => Promise<void> }) | undefined;
    if (!files?.reloadFiles) return undefined;
    const before = files.current()?.generation;
    await files.reloadFiles();
    const after = files.current();
    const lastError = files.health().lastError;
    if (after?.generation !== before) return ok('identity_files', true, `reloaded, ${after?.svid.id.toString()} until ${after?.svid.notAfter.toISOString()}`);
    if (lastError) return { part: 'identity_files', decision: 'error', reason: 'identity_files_invalid', detail: `rejected (${lastError.slice(0, 300)}); keeping the current identity` };
    return ok('identity_files', false, 'unchanged');
  }],
];

/** Reloads every part present, one after another; logs and audits one line per part. */
export async function reloadAll(targets: ReloadTargets, logger: Logger, audit: AuditSink): Promise<ReloadOutcome[]> {
  const outcomes: ReloadOutcome[] = [];
  for (const [part, reload] of RELOADERS) {
    let outcome: ReloadOutcome | undefined;
    try {
      outcome = await reload(targets);
    } catch (err) {
      // A reloader bug must not stop the others or the process.
      outcome = { part, decision: 'error', reason: 'internal_error', detail: `reload failed: ${errorMessage(err)}` };
    }
    if (!outcome) continue;
    outcomes.push(outcome);
    const line = `SIGHUP: ${outcome.part} ${outcome.detail}`;
    if (outcome.decision === 'allow') logger.info({ part: outcome.part, reason: outcome.reason }, line);
    else logger.error({ part: outcome.part, reason: outcome.reason }, line);
    audit.record({ type: 'reload', decision: outcome.decision, reason: outcome.reason, target: outcome.part, detail: outcome.detail });
  }
  return outcomes;
}
