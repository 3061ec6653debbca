/**
 * One-line, actionable errors for what commonly stops a sidecar from starting as a given user:
 * a state directory it may not create or write, a listen address in use or not permitted. The
 * CLI prints a SidecarError's message alone (no stack trace).
 */
import { accessSync, constants, existsSync, mkdirSync, rmdirSync } from 'node:fs';
import path from 'node:path';
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
    throw stateDirError(dir, 'create', realMkdirError(dir, err));
  }
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    throw stateDirError(dir, 'write to', err);
  }
}

/** How to give the sidecar a writable place: said by every start-up error about one. */
export const WRITABLE_STATE_FIX =
  'mount a writable volume there (in Kubernetes an emptyDir or a PersistentVolumeClaim at /var/lib/attest-sidecar), or set state_dir in the config or ATTEST_SIDECAR_STATE_DIR to a writable directory';

/**
 * A recursive mkdir reports ENOENT for any failure below an existing folder (a read-only file
 * system included): creating that folder's child alone gives the real cause.
 */
function realMkdirError(dir: string, err: unknown): unknown {
  if ((err as NodeJS.ErrnoException | undefined)?.code !== 'ENOENT') return err;
  let child = path.resolve(dir);
  while (!existsSync(path.dirname(child)) && path.dirname(child) !== child) child = path.dirname(child);
  try {
    mkdirSync(child, { mode: 0o700 });
    rmdirSync(child);
  } catch (real) {
    return real;
  }
  return err;
}

function stateDirError(dir: string, action: 'create' | 'write to', err: unknown): SidecarError {
  return new SidecarError('state_dir_unusable', `cannot ${action} state directory ${dir}: ${describeSystemError(err)}; ${WRITABLE_STATE_FIX}`, { cause: err });
}

/** A file the sidecar creates at start (admin token, audit log) cannot be written. */
export function unwritableFileError(reason: 'admin_token_unreadable' | 'audit_file_unwritable', what: string, file: string, err: unknown): SidecarError {
  if (err instanceof SidecarError) return err;
  return new SidecarError(reason, `cannot create ${what} ${file}: ${describeSystemError(err)}; put it on a writable volume (the state directory is one) or ${reason === 'admin_token_unreadable' ? 'set admin.token_file' : 'set log.audit (or log to stdout)'}`, { cause: err });
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
