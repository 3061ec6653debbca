/**
 * The dev mesh's durable state (revocations, budget ledgers, the admin token) and `dev --fresh`.
 * State survives restarts on purpose, so a spent demo budget or a revoked agent stays that way
 * across runs; --fresh deletes it. Only what the mesh itself writes is deleted (one directory
 * per sidecar in the mesh file, and the admin token), never the state directory or anything
 * else in it: --state-dir may point anywhere.
 */
import { rmSync } from 'node:fs';
import path from 'node:path';

/** The state directory of one dev sidecar (its name made safe as a file name). */
export function devSidecarStateDir(stateDir: string, name: string): string {
  return path.join(stateDir, name.replace(/[^A-Za-z0-9._-]/g, '_'));
}

/** Deletes the state the mesh wrote for these sidecars; returns the paths it removed. */
export function wipeDevState(stateDir: string, sidecarNames: readonly string[]): string[] {
  const targets = [...sidecarNames.map((n) => devSidecarStateDir(stateDir, n)), path.join(stateDir, 'admin-token')];
  for (const target of targets) rmSync(target, { recursive: true, force: true });
  return targets;
}

export interface DevStateSidecar {
  status(): Record<string, unknown>;
}

/**
 * What earlier runs left in force, one line each: revocations and spent budgets. Empty when
 * nothing is; the banner then says nothing about --fresh.
 */
export function carriedOverState(sidecars: ReadonlyMap<string, DevStateSidecar>): string[] {
  const lines: string[] = [];
  for (const [name, s] of sidecars) {
    const status = s.status();
    const rev = status.revocations as { all: unknown; entries: { spiffe_id: string }[] } | undefined;
    if (rev?.all) lines.push(`${name}: kill-all in force (every peer refused)`);
    for (const e of rev?.entries ?? []) lines.push(`${name}: ${e.spiffe_id} is revoked`);
    const budgets = (status.budgets ?? []) as { agent: string; period: string; spent_usd: number; limit_usd: number }[];
    for (const b of budgets) {
      if (b.spent_usd >= b.limit_usd) {
        lines.push(`${name}: ${b.agent}'s ${b.period} budget is spent ($${b.spent_usd.toFixed(2)} of $${b.limit_usd.toFixed(2)}): its charged requests get 402 until the period ends`);
      }
    }
  }
  return lines;
}
