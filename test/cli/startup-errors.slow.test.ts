/**
 * Starting as an ordinary user: the default state directory is one the user may create (under
 * $XDG_STATE_HOME or ~/.local/state), and a state directory or port the sidecar cannot have
 * stops it with one line naming what and why, exit 1, no stack trace. The unprivileged runs use
 * a real uid (nobody, via setpriv) because the tests run as root.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { defaultStateRoot } from '../../src/config/operations.js';
import { skipFor, toolsMissing } from '../helpers/needs.js';
import { binPath } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { waitUntil } from '../helpers/browser.js';

const NOBODY = 65534;

t.test('defaultStateRoot', async (t) => {
  const home = () => '/home/u';
  t.equal(defaultStateRoot({}, 0, home), '/var/lib/attest-sidecar', 'root');
  t.equal(defaultStateRoot({}, 1000, home), '/home/u/.local/state/attest-sidecar', 'a user');
  t.equal(defaultStateRoot({ XDG_STATE_HOME: '/xdg' }, 1000, home), '/xdg/attest-sidecar');
  t.equal(defaultStateRoot({ XDG_STATE_HOME: 'relative' }, 1000, home), '/home/u/.local/state/attest-sidecar', 'a relative XDG_STATE_HOME is ignored (the spec says so)');
  t.equal(defaultStateRoot({ ATTEST_SIDECAR_STATE_DIR: '/srv/state', XDG_STATE_HOME: '/xdg' }, 1000, home), '/srv/state', 'the variable wins');
  t.equal(defaultStateRoot({ ATTEST_SIDECAR_STATE_DIR: '/srv/state' }, 0, home), '/srv/state', 'for root too');
});

const dir = mkdtempSync(path.join(tmpdir(), 'attest-startup-'));
chmodSync(dir, 0o755); // nobody must reach the config files
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function writeConfig(name: string, body: string): string {
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(file, `identity: {source: dev, spiffe_id: spiffe://startup.test/me}\n${body}`, { mode: 0o644 });
  return file;
}
writeFileSync(path.join(dir, 'policy.yaml'), 'agents:\n  - name: a\n    spiffe_id: spiffe://startup.test/a\n    allowed_actions: [x]\n', { mode: 0o644 });

// Not being root is how the suite may run (a plain skip); root without setpriv is a missing tool.
const asNobody = process.getuid?.() !== 0 ? 'not running as root, so cannot switch to another user' : skipFor(toolsMissing(['setpriv'], 'util-linux'));
// env -u NODE_OPTIONS: the test runner's process hooks in children write where nobody may not.
const nobodyCmd = (args: string[]) =>
  ['setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'env', '-u', 'NODE_OPTIONS', process.execPath, binPath, ...args]] as const;

/** Runs the CLI to completion; it must exit by itself (a start failure) within the bound. */
function runToExit(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000, env: { PATH: process.env.PATH, ...env } });
  return { status: r.status, stderr: r.stderr, signal: r.signal };
}

function assertOneLineError(t: Test, r: { status: number | null; stderr: string }, pattern: RegExp): void {
  t.equal(r.status, 1, `exit 1 (stderr: ${r.stderr.trim()})`);
  const lines = r.stderr.trim().split('\n');
  t.equal(lines.length, 1, 'one line on stderr');
  t.match(lines[0], pattern);
  t.notMatch(r.stderr, /\n\s+at |fatal/, 'no stack trace');
}

t.test('as nobody: the default state directory works without root', { skip: asNobody }, async (t) => {
  const home = path.join(dir, 'home');
  mkdirSync(home);
  chownSync(home, NOBODY, NOBODY);
  const port = await freePort();
  const config = writeConfig('unprivileged', `admin: {listen: 127.0.0.1:${port}}\n`);
  const [cmd, args] = nobodyCmd(['run', '--config', config]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env.PATH, HOME: home } });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
  });
  await waitUntil(
    async () => {
      if (child.exitCode !== null) throw new Error(`the sidecar exited ${child.exitCode}: ${stderr}`);
      return fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
    },
    'the unprivileged sidecar to serve /healthz',
    { timeoutMs: 60_000 },
  );
  const state = path.join(home, '.local/state/attest-sidecar/unprivileged');
  t.ok(existsSync(path.join(state, 'budget')), `state under ${state}`);
  t.equal(statSync(state).uid, NOBODY, 'owned by the user');
  t.equal(statSync(state).mode & 0o777, 0o700, 'private');
  child.kill('SIGTERM');
  await exited;
});

t.test('as nobody: a state directory it may not create is one clear line', { skip: asNobody }, async (t) => {
  const rootOwned = path.join(dir, 'root-owned');
  mkdirSync(rootOwned, { mode: 0o755 });
  const config = writeConfig('denied', 'admin: {listen: 127.0.0.1:0}\n');
  const [cmd, args] = nobodyCmd(['run', '--config', config]);
  const viaEnv = runToExit(cmd, args, { HOME: dir, ATTEST_SIDECAR_STATE_DIR: rootOwned });
  assertOneLineError(t, viaEnv, new RegExp(`^attest-sidecar: cannot create state directory ${rootOwned}/denied: permission denied; mount a writable volume there .*, or set state_dir in the config or ATTEST_SIDECAR_STATE_DIR to a writable directory$`));
  const nonexistentHome = runToExit(cmd, args, { HOME: '/nonexistent' });
  assertOneLineError(t, nonexistentHome, /^attest-sidecar: cannot create state directory \/nonexistent\/\.local\/state\/attest-sidecar\/denied: /);
  // Exists but is not writable by this user.
  const readOnly = path.join(rootOwned, 'denied');
  mkdirSync(readOnly, { mode: 0o755 });
  const notWritable = runToExit(cmd, args, { HOME: dir, ATTEST_SIDECAR_STATE_DIR: rootOwned });
  assertOneLineError(t, notWritable, new RegExp(`^attest-sidecar: cannot write to state directory ${readOnly}: permission denied`));
});

t.test('a port held by another process is one clear line naming the listener', async (t) => {
  const holder = net.createServer();
  await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => holder.close(() => r())));
  const port = (holder.address() as net.AddressInfo).port;
  const state = `state_dir: ${path.join(dir, 'state')}\n`;
  const cases: [string, string][] = [
    ['admin', `admin: {listen: 127.0.0.1:${port}}\n`],
    ['outbound', `admin: {listen: 127.0.0.1:0}\noutbound: {listen: 127.0.0.1:${port}}\n`],
    ['inbound', `admin: {listen: 127.0.0.1:0}\ninbound: {listen: 127.0.0.1:${port}}\npolicy: policy.yaml\n`],
  ];
  for (const [role, body] of cases) {
    const config = writeConfig(`port-${role}`, body + state);
    const r = runToExit(process.execPath, [binPath, 'run', '--config', config], { HOME: dir });
    assertOneLineError(t, r, new RegExp(`^attest-sidecar: ${role} listener 127\\.0\\.0\\.1:${port}: address already in use$`));
  }
});
