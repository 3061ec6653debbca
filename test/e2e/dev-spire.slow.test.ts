/**
 * `attest-sidecar dev --spire` as a user runs it: the reference mesh on a real SPIRE server and
 * agent, each sidecar its own process under its own node binary with its own registration entry.
 * The README's requests behave as with the embedded issuer; the SVIDs are SPIRE's; SIGTERM stops
 * every child by pid; a sidecar that dies takes the mesh down with an error naming it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { findSpireBinaries, spireBinDir } from '../../src/mesh/spire/binaries.js';
import { binPath, repoRoot } from '../helpers/paths.js';
import { getStatus, spireSkip, until } from '../helpers/spire.js';

const SIDECARS = ['control-plane', 'orchestrator', 'harness-writer', 'intruder'];
const idOf = (name: string) => `spiffe://agent-mesh.local/ns/agent-swarm/sa/${name}`;

interface DevRun {
  proc: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<number | null>;
  env: NodeJS.ProcessEnv;
}

/** Starts `attest-sidecar dev --spire <bin dir> --free-ports` and waits for its banner. */
async function startDev(t: Test, extra: string[] = [], waitFor = 'Press Ctrl-C to stop.', logLevel = 'warn'): Promise<DevRun> {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'attest-dev-spire-'));
  t.teardown(() => rmSync(stateDir, { recursive: true, force: true }));
  const env = { ...process.env, ATTEST_SIDECAR_DEV_STATE: stateDir };
  const proc = spawn(process.execPath, [binPath, 'dev', '--spire', spireBinDir(), '--free-ports', '--log-level', logLevel, ...extra], {
    cwd: repoRoot,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (c: Buffer) => (out += c));
  proc.stderr!.on('data', (c: Buffer) => (err += c));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    }
  });
  await until(
    () => {
      if (proc.exitCode !== null) throw new Error('exited');
      return out.includes(waitFor) ? true : undefined;
    },
    'the dev mesh on SPIRE to start',
    150_000,
    () => `stdout:\n${out.slice(-4000)}\nstderr:\n${err.slice(-4000)}`,
  );
  return { proc, out: () => out, err: () => err, exited, env };
}

/** The banner's addresses of one sidecar: `name  SPIFFE_ID`, then a line of `kind http://host:port` parts. */
function addressOf(banner: string, name: string, kind: 'outbound' | 'admin'): string {
  const m = new RegExp(`^  ${name} +spiffe://\\S+\\n[^\\n]*\\b${kind} http://(127\\.0\\.0\\.1:\\d+)`, 'm').exec(banner);
  if (!m) throw new Error(`no ${kind} address of ${name} in the banner:\n${banner}`);
  return `http://${m[1]!}`;
}

function pidOf(banner: string, name: string): number {
  const m = new RegExp(`^  ${name} +(?:spiffe://\\S+\\n[^\\n]*\\bpid|pid) (\\d+)`, 'm').exec(banner);
  if (!m) throw new Error(`no pid of ${name} in the banner:\n${banner}`);
  return Number(m[1]);
}

function serverSocketOf(banner: string): string {
  const m = /^  spire-server +pid \d+, admin socket unix:\/\/(\S+)$/m.exec(banner);
  if (!m) throw new Error(`no SPIRE server socket in the banner:\n${banner}`);
  return m[1]!;
}

/** Pids of the processes whose command line mentions `text`. */
function processesMentioning(text: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

function curl(args: string[]): { code: string; body: string } {
  const r = spawnSync('curl', ['-sS', '--max-time', '15', '-w', '\n%{http_code}', ...args], { encoding: 'utf8' });
  const lines = r.stdout.trimEnd().split('\n');
  const code = lines.pop() ?? '';
  return { code, body: lines.join('\n') };
}

t.test('--spire without a value means the default folder ($SPIRE_BIN_DIR); missing binaries name it and the build script', async (t) => {
  for (const args of [['--spire', '--free-ports'], ['--free-ports', '--spire']]) {
    const r = spawnSync(process.execPath, [binPath, 'dev', ...args], { cwd: repoRoot, env: { ...process.env, SPIRE_BIN_DIR: '/nonexistent/spire-bin' }, encoding: 'utf8', timeout: 60_000 });
    t.equal(r.status, 1, args.join(' '));
    t.match(r.stderr, /no executable spire-server and spire-agent in \/nonexistent\/spire-bin: build them with scripts\/build-spire\.sh/);
  }
});

const skip = spireSkip();
if (skip) t.skip(skip, () => {});
else {
  const spireServer = findSpireBinaries()!.server;

  t.test('the reference mesh on real SPIRE: requests as with the embedded issuer, SPIRE SVIDs, SIGTERM stops every child', async (t) => {
    const started = Date.now();
    const dev = await startDev(t, ['--svid-ttl', '30s']);
    t.comment(`dev --spire: banner after ${Date.now() - started} ms`);
    const banner = dev.out();
    const serverSocket = serverSocketOf(banner);
    const pids = Object.fromEntries(['spire-server', 'spire-agent', ...SIDECARS].map((n) => [n, pidOf(banner, n)]));
    t.match(banner, /identities from a real SPIRE server and agent/);
    t.match(banner, /spire-agent +pid \d+, Workload API unix:\/\/\S+a\.sock/);
    t.ok(banner.includes(`--spire-server-socket unix://${serverSocket}`), 'the banner shows the kill command that also deletes the entry');

    const orchestrator = addressOf(banner, 'orchestrator', 'outbound');
    const writer = addressOf(banner, 'harness-writer', 'outbound');
    const intruder = addressOf(banner, 'intruder', 'outbound');
    const admin = addressOf(banner, 'control-plane', 'admin');

    t.test('each sidecar is its own process under its own node binary, named by its own entry', async (t) => {
      const shown = spawnSync(spireServer, ['entry', 'show', '-output', 'json', '-socketPath', serverSocket], { encoding: 'utf8', timeout: 30_000 });
      t.equal(shown.status, 0, shown.stderr);
      const entries = (JSON.parse(shown.stdout) as { entries: { id: string; spiffe_id: { path: string }; selectors: { type: string; value: string }[]; x509_svid_ttl: number }[] }).entries;
      t.equal(entries.length, SIDECARS.length, 'one entry per sidecar');
      for (const name of SIDECARS) {
        const exe = readlinkSync(`/proc/${pids[name]}/exe`);
        const entry = entries.find((e) => e.spiffe_id.path === `/ns/agent-swarm/sa/${name}`);
        t.ok(entry, `an entry for ${name}`);
        t.same(entry?.selectors, [{ type: 'unix', value: `path:${exe}` }], `${name}'s entry selects its own binary (${exe})`);
        t.equal(entry?.x509_svid_ttl, 30, 'the X509-SVID TTL is the mesh\'s (--svid-ttl)');
        t.ok(banner.includes(`${entry?.id}  ${idOf(name)}`), `the banner lists ${name}'s entry`);
      }
      t.equal(new Set(SIDECARS.map((n) => readlinkSync(`/proc/${pids[n]}/exe`))).size, SIDECARS.length, 'four distinct binaries');
    });

    t.test('the README requests: allowed, denied action, harness writer, unknown agent', async (t) => {
      const allowed = curl(['-x', orchestrator, 'http://control-plane/agents']);
      t.equal(allowed.code, '200', allowed.body);
      t.equal(JSON.parse(allowed.body).caller, idOf('orchestrator'));
      const denied = curl(['-x', orchestrator, '-X', 'POST', 'http://control-plane/fuzzer/harness']);
      t.equal(denied.code, '403');
      t.same(JSON.parse(denied.body), { error: "Action 'fuzzer.write_harness' not permitted" });
      const harness = curl(['-x', writer, '-X', 'POST', '-H', 'content-type: application/json', '-d', '{"target":"parse"}', 'http://control-plane/fuzzer/harness']);
      t.equal(harness.code, '201', harness.body);
      const unknown = curl(['-x', intruder, 'http://control-plane/agents']);
      t.equal(unknown.code, '403');
      t.same(JSON.parse(unknown.body), { error: 'Unknown agent' });
    });

    t.test("the sidecars' SVIDs and trust bundle are SPIRE's", async (t) => {
      const bundle = spawnSync(spireServer, ['bundle', 'show', '-format', 'pem', '-socketPath', serverSocket], { encoding: 'utf8', timeout: 30_000 });
      t.equal(bundle.status, 0, bundle.stderr);
      const spireRoots = bundle.stdout.split(/(?=-----BEGIN CERTIFICATE-----)/).filter((p) => p.includes('BEGIN')).map((p) => new X509Certificate(p).fingerprint256);
      t.ok(spireRoots.length >= 1);
      for (const name of SIDECARS) {
        const res = await getStatus(`${addressOf(banner, name, 'admin')}/status`);
        t.equal(res?.status, 200, `${name} /status`);
        const status = JSON.parse(res!.body);
        t.equal(status.spiffe_id, idOf(name));
        t.equal(status.identity_source.kind, 'workload-api');
        t.same(status.bundles.map((b: { trust_domain: string }) => b.trust_domain), ['agent-mesh.local']);
        t.same(status.bundles[0].authorities.map((a: { sha256: string }) => a.sha256).sort(), [...spireRoots].sort(), `${name} trusts exactly SPIRE's bundle`);
        const lifetime = (Date.parse(status.svid.not_after) - Date.parse(status.svid.not_before)) / 1000;
        t.equal(lifetime, 40, `${name}: a 30 s SVID with SPIRE's 10 s backdated NotBefore`);
      }
      const ready = curl([`${admin}/readyz`]);
      t.equal(ready.code, '200', ready.body);
    });

    t.test("the kill switch through the sidecars' admin API", async (t) => {
      const cli = (...args: string[]) => spawnSync(process.execPath, [binPath, ...args, '--admin', admin], { env: dev.env, encoding: 'utf8', timeout: 20_000 });
      const killed = cli('kill', idOf('orchestrator'), '--reason', 'test');
      t.equal(killed.status, 0, killed.stderr);
      const refused = curl(['-x', orchestrator, 'http://control-plane/agents']);
      t.equal(refused.code, '403');
      t.same(JSON.parse(refused.body), { error: 'Agent revoked' });
      t.equal(curl(['-x', writer, 'http://control-plane/fuzzer/source/parser.c']).code, '200', 'other agents are unaffected');
      const restored = cli('restore', idOf('orchestrator'));
      t.equal(restored.status, 0, restored.stderr);
      t.equal(curl(['-x', orchestrator, 'http://control-plane/agents']).code, '200', 'restored');
    });

    const killHelp = spawnSync(process.execPath, [binPath, 'kill', '--help'], { encoding: 'utf8', timeout: 20_000 }).stdout;
    const noSpireKill = killHelp.includes('--spire-server-socket') ? false : 'this build of attest-sidecar kill has no --spire-server-socket';
    t.test("the banner's SPIRE kill command also deletes the agent's entry; restore re-creates it", { skip: noSpireKill }, async (t) => {
      const printed = /npx attest-sidecar kill (\S+ .*--spire-server-socket \S+)$/m.exec(banner)?.[1];
      t.ok(printed, 'the banner prints the command');
      const args = printed!.split(/\s+/);
      const entriesOf = (id: string) => {
        const shown = spawnSync(spireServer, ['entry', 'show', '-spiffeID', id, '-output', 'json', '-socketPath', serverSocket], { encoding: 'utf8', timeout: 30_000 });
        return ((JSON.parse(shown.stdout) as { entries?: { selectors: unknown }[] }).entries ?? []);
      };
      const before = entriesOf(idOf('orchestrator'));
      t.equal(before.length, 1);
      const killed = spawnSync(process.execPath, [binPath, 'kill', ...args], { env: dev.env, encoding: 'utf8', timeout: 30_000 });
      t.equal(killed.status, 0, killed.stdout + killed.stderr);
      t.same(entriesOf(idOf('orchestrator')), [], 'the entry is deleted');
      const refused = curl(['-x', orchestrator, 'http://control-plane/agents']);
      t.equal(refused.code, '403', 'and the revocation is instant');
      const restored = spawnSync(process.execPath, [binPath, 'restore', ...args], { env: dev.env, encoding: 'utf8', timeout: 30_000 });
      t.equal(restored.status, 0, restored.stdout + restored.stderr);
      t.same(entriesOf(idOf('orchestrator')).map((e) => e.selectors), before.map((e) => e.selectors), 're-created with the same selector');
      await until(() => (curl(['-x', orchestrator, 'http://control-plane/agents']).code === '200' ? true : undefined), 'the restored orchestrator to be served', 60_000);
      t.pass('restored');
    });

    t.test('SIGTERM: the dev command exits 0 and every child (SPIRE server, agent, sidecars) is gone', async (t) => {
      for (const [name, pid] of Object.entries(pids)) t.ok(alive(pid), `${name} (pid ${pid}) runs`);
      dev.proc.kill('SIGTERM');
      t.equal(await dev.exited, 0, dev.err());
      for (const [name, pid] of Object.entries(pids)) {
        await until(() => (alive(pid) ? undefined : true), `${name} (pid ${pid}) to be gone`, 30_000);
      }
      t.pass('every child stopped');
    });

    t.test('its stdout (four sidecar processes interleaved with logs) verifies with audit verify --mixed', async (t) => {
      const file = path.join(dev.env.ATTEST_SIDECAR_DEV_STATE!, 'stdout.log');
      writeFileSync(file, dev.out());
      const r = spawnSync(process.execPath, [binPath, 'audit', 'verify', file, '--mixed', '--json'], { encoding: 'utf8' });
      t.equal(r.status, 0, r.stdout + r.stderr);
      const report = JSON.parse(r.stdout) as { ok: boolean; chains: { sidecar: string }[] };
      t.same(report.chains.map((c) => c.sidecar).sort(), [...SIDECARS].sort(), 'one chain per sidecar');
    });
  });

  t.test('SIGTERM during the start stops what was started so far', async (t) => {
    // SPIRE is up, the sidecars not yet: the signal lands in the middle of the start.
    const dev = await startDev(t, [], '"msg":"SPIRE server started"', 'info');
    const folder = /"socket":"(\/tmp\/spire-[^/"]+)\/s\.sock"/.exec(dev.out())?.[1];
    t.ok(folder, 'the SPIRE folder is logged');
    dev.proc.kill('SIGTERM');
    await dev.exited;
    await until(() => (processesMentioning(folder!).length === 0 ? true : undefined), `no process left of ${folder}`, 30_000, () => processesMentioning(folder!).join(' '));
    t.pass('no SPIRE process or sidecar of that start is left');
    t.notOk(existsSync(folder!), 'its folder is removed');
  });

  t.test('a sidecar that ends on its own stops the mesh: exit 1 naming it with its stderr tail; every other child is stopped', async (t) => {
    const dev = await startDev(t);
    const banner = dev.out();
    const pids = Object.fromEntries(['spire-server', 'spire-agent', ...SIDECARS].map((n) => [n, pidOf(banner, n)]));
    // Stopped behind the mesh's back: it says so on stderr and exits 0, still an unexpected end.
    process.kill(pids['harness-writer']!, 'SIGTERM');
    t.equal(await dev.exited, 1);
    t.match(dev.err(), new RegExp(`sidecar 'harness-writer' \\(pid ${pids['harness-writer']}\\) exited with 0; its stderr ends with:\\nattest-sidecar: SIGTERM, shutting down`));
    t.match(dev.err(), /stopping the mesh/);
    for (const [name, pid] of Object.entries(pids)) {
      await until(() => (alive(pid) ? undefined : true), `${name} (pid ${pid}) to be gone`, 30_000);
    }
    t.pass('every other child stopped');
  });
}
