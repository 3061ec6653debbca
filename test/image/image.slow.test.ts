/**
 * The container image, built and run for real with podman (docs/image.md): scripts/build-image.sh
 * assembles (or reuses) the local Node base and builds the Dockerfile; the image answers --help,
 * holds no tests, benchmarks, TypeScript sources or dev configs, runs as uid 10001 on a read-only
 * root, and the dev mesh inside it (the repository's config/ mounted read-only, never part of the
 * image) proxies an allowed and a denied request sent from the host through a published port.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { repoRoot } from '../helpers/paths.js';
import { BUILD_TIMEOUT_MS, buildImage, IMAGE, imageSkip, podman, RUN_FLAGS, viaProxy, waitFor } from './podman.js';

const skip = imageSkip();

if (skip) {
  t.skip(skip, () => {});
} else {
  t.setTimeout(BUILD_TIMEOUT_MS + 10 * 60_000);

  const built = await buildImage();
  t.comment(`scripts/build-image.sh took ${(built.ms / 1000).toFixed(1)} s`);
  t.equal(built.printed, IMAGE, 'the script prints the image it built');

  t.test('image metadata: user 10001, node entrypoint without env, the contract paths', async (t) => {
    const r = await podman(['image', 'inspect', '--format', '{{json .Config}}', IMAGE]);
    t.equal(r.code, 0, r.stderr);
    const config = JSON.parse(r.stdout) as { User: string; Entrypoint: string[]; Cmd: string[]; Env: string[] };
    t.equal(config.User, '10001:10001');
    t.same(config.Entrypoint, ['node', '--min-semi-space-size=8', '--max-semi-space-size=8', '/app/dist/src/cli/main.js']);
    t.same(config.Cmd, ['run', '--config', '/etc/attest-sidecar/sidecar.yaml']);
    t.ok(config.Env.includes('ATTEST_SIDECAR_STATE_DIR=/var/lib/attest-sidecar'));
    t.ok(config.Env.includes('SPIFFE_ENDPOINT_SOCKET=unix:///spiffe-workload-api/spire-agent.sock'));
    t.notOk(config.Env.some((e) => e.startsWith('NODE_EXTRA_CA_CERTS=')), 'the build-time CA setting stays out of the image');
  });

  t.test('--help on a read-only root', async (t) => {
    const r = await podman(['run', '--rm', ...RUN_FLAGS, '--read-only', '--read-only-tmpfs=false', IMAGE, '--help']);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /^attest-sidecar: SPIFFE identity, mTLS and policy/);
    t.match(r.stdout, /attest-sidecar run --config FILE/);
    t.equal(r.stderr, '');
  });

  t.test('what the image holds (and does not)', async (t) => {
    const r = await podman([
      'run', '--rm', ...RUN_FLAGS, '--read-only', '--entrypoint', '/bin/sh', IMAGE, '-c',
      'find /app -path /app/node_modules -prune -o -print; echo ---; ls -ldn /var/lib/attest-sidecar /etc/attest-sidecar /spiffe-workload-api',
    ]);
    t.equal(r.code, 0, r.stderr);
    const [listing = '', dirs = ''] = r.stdout.split('---\n');
    const files = listing.split('\n').filter(Boolean);
    t.ok(files.includes('/app/dist/src/cli/main.js'), 'the compiled CLI');
    t.ok(files.includes('/app/proto/workload.proto'), 'the Workload API definition it loads at run time');
    t.ok(files.includes('/app/package.json'));
    const forbidden = files.filter((f) => /^\/app\/(test|bench|fuzz|fixtures|config|src|bin|tools|scripts|docs|dist\/(test|bench|fuzz))(\/|$)/.test(f) || /\.(ts|map)$/.test(f) || /tsconfig|\.tsbuildinfo/.test(f));
    t.same(forbidden, [], 'no tests, benchmarks, dev configs, TypeScript sources, source maps or build configs');
    t.match(dirs, /^drwx------\s+\d+\s+10001\s+10001\s.*\/var\/lib\/attest-sidecar$/m, 'the state directory belongs to the sidecar user, mode 0700');
    t.match(dirs, /^d[rwx-]{9}\s+\d+\s+0\s+0\s.*\/etc\/attest-sidecar$/m, 'the config directory is root-owned');
    t.match(dirs, /\/spiffe-workload-api$/m, 'the Workload API socket mount point exists');
    const prod = await podman(['run', '--rm', ...RUN_FLAGS, '--entrypoint', '/bin/sh', IMAGE, '-c', 'ls /app/node_modules; ls /app/node_modules/@types 2>/dev/null || true']);
    const modules = prod.stdout.split('\n');
    for (const dev of ['typescript', 'tap', 'playwright-core', 'autocannon', 'kubernetes-models', 'fast-json-patch', 'ajv']) {
      t.notOk(modules.includes(dev), `no dev dependency ${dev}`);
    }
    for (const dep of ['pino', 'yaml', 'jose', 'undici', '@grpc']) t.ok(modules.includes(dep), `production dependency ${dep}`);
  });

  t.test('dev mesh inside the image: read-only root, published outbound port, allowed and denied requests from the host', async (t) => {
    // The product image has no dev configs: the repository's config/ is mounted read-only, and a
    // mesh file of the test's own points at it, with the orchestrator's outbound proxy on all
    // interfaces (a published port reaches the container's interface, not its loopback).
    const meshDir = mkdtempSync(path.join(tmpdir(), 'attest-image-mesh-'));
    t.teardown(() => rmSync(meshDir, { recursive: true, force: true }));
    chmodSync(meshDir, 0o755); // readable by the container's uid 10001
    const orchestrator = readFileSync(path.join(repoRoot, 'config/dev/orchestrator.yaml'), 'utf8').replace(
      /^ {2}listen: 127\.0\.0\.1:15001$/m,
      '  listen: 0.0.0.0:15001\n  allow_non_loopback: true',
    );
    t.match(orchestrator, /listen: 0\.0\.0\.0:15001/, 'the orchestrator config was adapted');
    writeFileSync(path.join(meshDir, 'orchestrator.yaml'), orchestrator);
    writeFileSync(
      path.join(meshDir, 'mesh.yaml'),
      [
        'trust_domain: agent-mesh.local',
        'svid_ttl: 60s',
        'demo_app: { listen: 127.0.0.1:8080 }',
        'sidecars:',
        '  - /dev-config/dev/control-plane.yaml',
        '  - orchestrator.yaml',
        '',
      ].join('\n'),
    );
    const name = `attest-image-test-${process.pid}`;
    const run = await podman([
      'run', '-d', '--name', name, ...RUN_FLAGS,
      '--read-only',
      '--tmpfs', '/var/lib/attest-sidecar:rw,mode=0700,U',
      '--volume', `${path.join(repoRoot, 'config')}:/dev-config:ro`,
      '--volume', `${meshDir}:/mesh:ro`,
      '--publish', '127.0.0.1::15001',
      IMAGE, 'dev', '--mesh', '/mesh/mesh.yaml', '--state-dir', '/var/lib/attest-sidecar', '--log-level', 'warn',
    ]);
    t.equal(run.code, 0, run.stderr);
    t.teardown(async () => {
      await podman(['rm', '--force', '--time', '0', name]);
    });

    let logs = '';
    await waitFor('the dev mesh banner', 90_000, async () => {
      const l = await podman(['logs', name]);
      logs = l.stdout + l.stderr;
      if (logs.includes('Press Ctrl-C to stop.')) return true;
      const state = await podman(['container', 'inspect', '--format', '{{.State.Running}}', name]);
      if (state.code !== 0 || state.stdout.trim() === 'false') throw new Error(`the container stopped:\n${logs}`);
      return undefined;
    }).catch((err: Error) => {
      throw new Error(`${err.message}\n${logs}`);
    });

    const port = await podman(['port', name, '15001/tcp']);
    t.equal(port.code, 0, port.stderr);
    const hostPort = Number(/:(\d+)\s*$/.exec(port.stdout.trim())?.[1]);
    t.ok(hostPort > 0, `published at ${port.stdout.trim()}`);

    const allowed = await viaProxy(hostPort, 'GET', 'http://control-plane/agents');
    t.equal(allowed.status, 200, allowed.body);
    t.equal(JSON.parse(allowed.body).caller, 'spiffe://agent-mesh.local/ns/agent-swarm/sa/orchestrator');

    const denied = await viaProxy(hostPort, 'POST', 'http://control-plane/fuzzer/harness');
    t.equal(denied.status, 403, denied.body);
    t.same(JSON.parse(denied.body), { error: "Action 'fuzzer.write_harness' not permitted" });

    const inside = await podman(['exec', name, '/bin/sh', '-c', 'grep ^Uid: /proc/1/status; ls /var/lib/attest-sidecar; touch /app/written 2>&1 || echo root-read-only']);
    t.equal(inside.code, 0, inside.stderr);
    t.match(inside.stdout, /^Uid:\s+10001\s+10001\s+10001\s+10001$/m, 'the sidecar process runs as uid 10001');
    t.match(inside.stdout, /admin-token/, 'state (the admin token) went to the state volume');
    t.match(inside.stdout, /Read-only file system/, 'the root file system is read-only');
  });
}
