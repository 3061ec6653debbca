/**
 * One-line, actionable errors for what commonly stops a sidecar from starting as a given user:
 * a state directory it may not create or write, a listen address in use or not permitted. The
 * CLI prints a SidecarError's message alone (no stack trace).
 */
import { accessSync, constants, mkdirSync } from 'node:fs';
import { SidecarError, errorMessage } from './errors.js';

/** System error codes in words an operator recognises (the rest keep Node's message). */
const SYSTEM_ERROR_TEXT: Readonly<Record<string, string>> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
  ENOTDIR: 'a component of the path is not a directory',
  ENOENT: 'a parent directory does not exist',
  EEXIST: 'exists and is not a directory',
  EADDRINUSE: 'address already in use',
  EADDRNOTAVAIL: 'address not available on this host',
};

export function describeSystemError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return (code && SYSTEM_ERROR_TEXT[code]) || errorMessage(err);
}

/** Creates the state directory (0700) and checks it is writable, or throws 'state_dir_unusable'. */
export function ensureStateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw stateDirError(dir, 'create', err);
  }
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    throw stateDirError(dir, 'write to', err);
  }
}

function stateDirError(dir: string, action: 'create' | 'write to', err: unknown): SidecarError {
  return new SidecarError(
    'state_dir_unusable',
    `cannot ${action} state directory ${dir}: ${describeSystemError(err)} (set state_dir in the config or ATTEST_SIDECAR_STATE_DIR)`,
    { cause: err },
  );
}

/** A bind failure of server.listen (address in use, not permitted, not on this host). */
export function isListenError(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.syscall === 'listen';
}

/** `inbound listener 127.0.0.1:15443: address already in use`; SidecarErrors pass unchanged. */
export function listenError(role: string, at: { host: string; port: number }, err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (err instanceof SidecarError || !code) return err;
  const where = at.host.includes(':') ? `[${at.host}]:${at.port}` : `${at.host}:${at.port}`;
  const hint = code === 'EACCES' && at.port < 1024 ? ' (ports below 1024 need root or CAP_NET_BIND_SERVICE)' : '';
  return new SidecarError('listen_failed', `${role} ${where}: ${describeSystemError(err)}${hint}`, { cause: err });
}
