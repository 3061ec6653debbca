/** Dev mesh file locations (no dev issuer code: the CLI's kill commands import this). */
import { homedir } from 'node:os';
import path from 'node:path';

/**
 * Where the dev mesh keeps durable state (revocations, budget ledgers, the admin token):
 * $ATTEST_SIDECAR_DEV_STATE, else ~/.attest-sidecar/dev. It survives restarts on purpose: a
 * revoked dev agent stays revoked until `attest-sidecar restore`.
 */
export function devStateDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.ATTEST_SIDECAR_DEV_STATE || path.join(homedir(), '.attest-sidecar', 'dev');
}

/** The admin token file the dev mesh writes (the CLI's default --token-file). */
export function devTokenFile(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(devStateDir(env), 'admin-token');
}

