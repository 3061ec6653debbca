/**
 * `attest-sidecar dev --fresh`: the dev mesh keeps revocations and budget spend across restarts
 * (and its banner says so, naming --fresh); --fresh deletes that state and the quickstart works
 * again. Runs the real executable on a copy of config/dev-mesh.yaml moved to free ports, so it
 * never competes with the documented ports.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { binPath, repoRoot } from '../helpers/paths.js';
import { freePort } from '../helpers/ports.js';
import { viaProxy } from '../helpers/mesh.js';

const work = mkdtempSync(path.join(tmpdir(), 'attest-dev-fresh-'));
const stateDir = path.join(work, 'state');
t.teardown(() => rmSync(work, { recursive: true, force: true }));

// The dev mesh files with every 127.0.0.1:PORT moved to a free port (one mapping for all files).
const ports = new Map<string, number>();
const meshDir = path.join(work, 'config');
mkdirSync(path.join(meshDir, 'dev'), { recursive: true });
async function relocate(rel: string): Promise<void> {
  let text = readFileSync(path.join(repoRoot, 'config', rel), 'utf8');
  for (const port of new Set([...text.matchAll(/127\.0\.0\.1:(\d+)/g)].map((m) => m[1]!))) {
    if (!ports.has(port)) ports.set(port, await freePort());
  }
  text = text.replace(/127\.0\.0\.1:(\d+)/g, (_, p: string) => `127.0.0.1:${ports.get(p)}`);
  writeFileSync(path.join(meshDir, rel), text);
}
await relocate('dev-mesh.yaml');
for (const f of readdirSync(path.join(repoRoot, 'config/dev'))) {
  if (f.endsWith('.yaml')) await relocate(`dev/${f}`);
  else copyFileSync(path.join(repoRoot, 'config/dev', f), path.join(meshDir, 'dev', f));
}
const orchestratorProxy = `http://127.0.0.1:${ports.get('15001')}`;
const harnessProxy = `http://127.0.0.1:${ports.get('15002')}`;
const admin = `http://127.0.0.1:${ports.get('15000')}`;
const HARNESS_WRITER = 'spiffe://agent-mesh.local/ns/agent-swarm/sa/harness-writer';

/** Starts the dev mesh; resolves with its banner once it is up. */
async function startDev(extra: string[]): Promise<{ proc: ChildProcess; banner: string }> {
  const proc = spawn(process.execPath, [binPath, 'dev', '--mesh', path.join(meshDir, 'dev-mesh.yaml'), '--state-dir', stateDir, '--log-level', 'warn', ...extra], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (c: Buffer) => (out += c));
  proc.stderr!.on('data', (c: Buffer) => (err += c));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dev mesh did not start:\n${out}\n${err}`)), 60_000);
    proc.stdout!.on('data', () => {
      if (out.includes('Press Ctrl-C to stop.')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`dev mesh exited (${code}):\n${out}\n${err}`));
    });
  });
  return { proc, banner: out };
}

async function stopDev(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

const task = () => viaProxy(orchestratorProxy, 'POST', 'http://control-plane/tasks', { headers: { 'content-type': 'application/json' }, body: '{"kind":"fuzz"}' });
const harnessList = () => viaProxy(harnessProxy, 'POST', 'http://control-plane/fuzzer/harness', { headers: { 'content-type': 'application/json' }, body: '{}' });

t.test('spend the budget and revoke an agent, restart: both persist and the banner names --fresh', async (t) => {
  const first = await startDev([]);
  t.teardown(() => stopDev(first.proc));
  t.notMatch(first.banner, /State from earlier runs/, 'a first run has nothing carried over');
  let created = 0;
  for (let i = 0; i < 40; i++) {
    const r = await task();
    if (r.status === 402) break;
    t.equal(r.status, 201, `task ${i + 1}: ${r.status === 201 ? 'created' : r.body}`);
    created++;
  }
  t.equal(created, 20, '$5 at $0.25 a task');
  t.equal((await task()).status, 402, 'the budget is spent');
  const token = readFileSync(path.join(stateDir, 'admin-token'), 'utf8').trim();
  const kill = await fetch(`${admin}/v1/kill`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ spiffe_id: HARNESS_WRITER }) });
  t.equal(kill.status, 200);
  await stopDev(first.proc);

  const second = await startDev([]);
  t.teardown(() => stopDev(second.proc));
  t.match(second.banner, /State from earlier runs is in force/);
  t.match(second.banner, /orchestrator's daily budget is spent \(\$5\.00 of \$5\.00\)/);
  t.match(second.banner, new RegExp(`${HARNESS_WRITER.replace(/[./]/g, '\\$&')} is revoked`));
  t.match(second.banner, /attest-sidecar dev --fresh/);
  t.equal((await task()).status, 402, 'still spent after a restart (the quickstart problem)');
  t.equal((await harnessList()).status, 403, 'still revoked after a restart');
  await stopDev(second.proc);
});

t.test('dev --fresh starts clean: budget, revocations and admin token', async (t) => {
  const oldToken = readFileSync(path.join(stateDir, 'admin-token'), 'utf8').trim();
  const unrelated = path.join(stateDir, 'notes.txt');
  writeFileSync(unrelated, 'not the mesh state');
  const fresh = await startDev(['--fresh']);
  t.teardown(() => stopDev(fresh.proc));
  t.notMatch(fresh.banner, /State from earlier runs/);
  t.equal((await task()).status, 201, 'the quickstart command works again');
  t.equal((await harnessList()).status, 201, 'nothing revoked');
  t.not(readFileSync(path.join(stateDir, 'admin-token'), 'utf8').trim(), oldToken, 'a new admin token');
  t.ok(existsSync(unrelated), 'files the mesh did not write are left alone');
  await stopDev(fresh.proc);
});
