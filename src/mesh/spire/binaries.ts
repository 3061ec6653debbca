/**
 * DEVELOPMENT AND TEST ONLY: where the real SPIRE binaries are. They are built from the Go module
 * proxy by scripts/build-spire.sh into a cache outside the repository, so that a warm machine (or
 * CI run) reuses them instead of spending minutes on a cold cgo build.
 */
import { accessSync, constants } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';

export const SPIRE_VERSION = '1.13.3';

/** The project's cache root: $ATTEST_SIDECAR_CACHE, else $XDG_CACHE_HOME/attest-sidecar, else ~/.cache/attest-sidecar. */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.ATTEST_SIDECAR_CACHE) return path.resolve(env.ATTEST_SIDECAR_CACHE);
  return path.join(env.XDG_CACHE_HOME || path.join(homedir(), '.cache'), 'attest-sidecar');
}

/** Folder holding spire-server and spire-agent: $SPIRE_BIN_DIR, else the cache's spire-v<version>/bin. */
export function spireBinDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.SPIRE_BIN_DIR ? path.resolve(env.SPIRE_BIN_DIR) : path.join(cacheRoot(env), `spire-v${SPIRE_VERSION}`, 'bin');
}

export interface SpireBinaries {
  server: string;
  agent: string;
}

/** The two binaries in `dir`, or undefined when either is missing or not executable. */
export function findSpireBinaries(dir: string = spireBinDir()): SpireBinaries | undefined {
  const found = { server: path.join(dir, 'spire-server'), agent: path.join(dir, 'spire-agent') };
  try {
    accessSync(found.server, constants.X_OK);
    accessSync(found.agent, constants.X_OK);
    return found;
  } catch {
    return undefined;
  }
}
