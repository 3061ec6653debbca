/**
 * A read-only root file system (Kubernetes `readOnlyRootFilesystem: true`): the sidecar writes
 * only to its state directory, the admin token file and the audit file it is told about. When
 * one of them is not writable, `attest-sidecar run` stops with one line naming the path and the
 * fix, exit 1. The read-only mount is real: a bind mount remounted read-only in a user and
 * mount namespace (unshare), so root gets EROFS as it would in the pod.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { skipFor, toolsMissing } from '../helpers/needs.js';
import { binPath } from '../helpers/paths.js';

const dir = mkdtempSync(path.join(tmpdir(), 'attest-rostate-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const readOnly = path.join(dir, 'ro');
const writable = path.join(dir, 'rw');
mkdirSync(path.join(readOnly, 'existing'), { recursive: true });
mkdirSync(writable);

/** Runs `attest-sidecar run --config FILE` with `readOnly` mounted read-only, to completion. */
function runReadOnly(config: string, env: NodeJS.ProcessEnv = {}) {
  const script = `mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"`;
  const r = spawnSync('unshare', ['--user', '--map-root-user', '--mount', 'sh', '-c', script, 'sh', readOnly, 'env', '-u', 'NODE_OPTIONS', process.execPath, binPath, 'run', '--config', config], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { PATH: process.env.PATH, HOME: dir, ...env },
  });
  return { status: r.status, stderr: r.stderr };
}

function probeUnshare(): string | undefined {
  const missing = toolsMissing(['unshare', 'mount'], 'util-linux');
  if (missing) return skipFor(missing) || undefined;
  const r = spawnSync('unshare', ['--user', '--map-root-user', '--mount', 'sh', '-c', `mount --bind "${readOnly}" "${readOnly}" && mount -o remount,bind,ro "${readOnly}" && ! touch "${readOnly}/probe" 2>/dev/null`], { encoding: 'utf8', timeout: 30_000 });
  return r.status === 0 ? undefined : `cannot mount read-only in a user namespace here: ${(r.stderr || `exit ${r.status}`).trim()}`;
}
// A missing tool fails in CI (skipFor); a kernel or sandbox that forbids the mount is a plain skip.
const skip = probeUnshare() ?? false;

function config(name: string, body: string, admin = 'admin: {listen: 127.0.0.1:0}'): string {
  const file = path.join(writable, `${name}.yaml`);
  writeFileSync(file, `identity: {source: dev, spiffe_id: spiffe://rostate.test/me}\n${admin}\n${body}`);
  return file;
}

function assertOneLine(t: Test, r: { status: number | null; stderr: string }, pattern: RegExp): void {
  t.equal(r.status, 1, `exit 1 (stderr: ${r.stderr.trim()})`);
  const lines = r.stderr.trim().split('\n');
  t.equal(lines.length, 1, 'one line on stderr');
  t.match(lines[0], pattern);
  t.notMatch(r.stderr, /\n\s+at |fatal/, 'no stack trace');
}

const FIX = /mount a writable volume there \(in Kubernetes an emptyDir or a PersistentVolumeClaim at \/var\/lib\/attest-sidecar\), or set state_dir in the config or ATTEST_SIDECAR_STATE_DIR/;

t.test('a state directory on a read-only file system: its path, the cause and the fix', { skip }, async (t) => {
  const missing = runReadOnly(config('missing', `state_dir: ${readOnly}/state\n`));
  assertOneLine(t, missing, new RegExp(`^attest-sidecar: cannot create state directory ${readOnly}/state: read-only file system; `));
  t.match(missing.stderr, FIX);
  const existing = runReadOnly(config('existing', `state_dir: ${readOnly}/existing\n`));
  assertOneLine(t, existing, new RegExp(`^attest-sidecar: cannot write to state directory ${readOnly}/existing: read-only file system; `));
  t.match(existing.stderr, FIX);
  // The default state directory comes from ATTEST_SIDECAR_STATE_DIR (what the injector sets).
  const viaEnv = runReadOnly(config('via-env', ''), { ATTEST_SIDECAR_STATE_DIR: readOnly });
  assertOneLine(t, viaEnv, new RegExp(`^attest-sidecar: cannot create state directory ${readOnly}/via-env: read-only file system; `));
});

t.test('the admin token file and the audit file on a read-only file system', { skip }, async (t) => {
  const state = `state_dir: ${writable}/state\n`;
  const token = runReadOnly(config('token', state, `admin: {listen: 127.0.0.1:0, token_file: ${readOnly}/admin-token}`));
  assertOneLine(t, token, new RegExp(`^attest-sidecar: cannot create admin token file ${readOnly}/admin-token: read-only file system; put it on a writable volume`));
  const audit = runReadOnly(config('audit', `${state}log: {audit: ${readOnly}/audit.log}\n`));
  assertOneLine(t, audit, new RegExp(`^attest-sidecar: cannot create audit file ${readOnly}/audit.log: read-only file system; put it on a writable volume`));
});

t.test('a file where the state directory should be', async (t) => {
  const file = path.join(writable, 'not-a-dir');
  writeFileSync(file, 'x');
  const r = spawnSync(process.execPath, [binPath, 'run', '--config', config('file', `state_dir: ${file}\n`)], { encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH, HOME: dir } });
  assertOneLine(t, { status: r.status, stderr: r.stderr }, new RegExp(`^attest-sidecar: cannot create state directory ${file}: exists and is not a directory; `));
  const under = spawnSync(process.execPath, [binPath, 'run', '--config', config('under', `state_dir: ${file}/state\n`)], { encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH, HOME: dir } });
  assertOneLine(t, { status: under.status, stderr: under.stderr }, new RegExp(`^attest-sidecar: cannot create state directory ${file}/state: a component of the path is not a directory; `));
});
