/**
 * A sidecar pair from the image as a pod would run it (docs/image.md): three containers sharing
 * one network namespace (an app, the service's sidecar, the agent's sidecar), each sidecar with
 * `attest-sidecar run` and its config at /etc/attest-sidecar/sidecar.yaml (the image's default
 * command), a read-only root with no writable /tmp, and a tmpfs state volume. From the host,
 * through the agent sidecar's published outbound port: an allowed request (200, the app sees the
 * agent's SPIFFE ID) and a denied one (403). Then SIGTERM (podman stop) ends the node process
 * that is PID 1 with status 0.
 */
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { DevCa } from '../../src/dev/ca.js';
import { BUILD_TIMEOUT_MS, buildImage, IMAGE, imageSkip, podman, RUN_FLAGS, viaProxy, waitFor } from './podman.js';

const TD = 'pod.test';
const SERVICE_ID = `spiffe://${TD}/ns/apps/sa/control-plane`;
const AGENT_ID = `spiffe://${TD}/ns/agents/sa/orchestrator`;
const SIDECAR_UID = 10001;

/** The app: echoes the request line and headers as JSON, on the pod's loopback. */
const APP_SCRIPT = `require('http').createServer((req, res) => {
  const body = JSON.stringify({ method: req.method, url: req.url, headers: req.headers });
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(body);
}).listen(8080, '127.0.0.1');`;

const SERVICE_CONFIG = `identity: { source: files, cert: svid.pem, key: svid-key.pem, bundle: bundle.pem }
inbound:
  listen: 127.0.0.1:15443
  app: http://127.0.0.1:8080
  actions:
    - { method: GET,  path: /agents,         action: agent.list }
    - { method: POST, path: /fuzzer/harness, action: fuzzer.write_harness }
policy: policy.yaml
admin: { listen: 127.0.0.1:15000 }
`;

const POLICY = `agents:
  - name: orchestrator
    spiffe_id: ${AGENT_ID}
    allowed_actions: [agent.list]
`;

// On all interfaces: a published port reaches the namespace's interface, not its loopback.
const AGENT_CONFIG = `identity: { source: files, cert: svid.pem, key: svid-key.pem, bundle: bundle.pem }
outbound:
  listen: 0.0.0.0:15001
  allow_non_loopback: true
  routes:
    - { name: control-plane, upstream: "https://127.0.0.1:15443", server_id: "${SERVICE_ID}" }
admin: { listen: 127.0.0.1:15100 }
`;

const skip = imageSkip();

if (skip) {
  t.skip(skip, () => {});
} else {
  t.setTimeout(BUILD_TIMEOUT_MS + 10 * 60_000);
  const built = await buildImage();
  t.comment(`scripts/build-image.sh took ${(built.ms / 1000).toFixed(1)} s`);

  // Config folders as ConfigMap/Secret mounts would be: readable by the sidecar's uid only.
  const dir = mkdtempSync(path.join(tmpdir(), 'attest-image-pair-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const ca = await DevCa.create({ trustDomain: TD });
  const writeConfig = async (name: string, id: string, files: Record<string, string>) => {
    const folder = path.join(dir, name);
    mkdirSync(folder, { mode: 0o700 });
    const svid = await ca.issueX509Svid(id, { ttlSeconds: 3600 });
    const all = { ...files, 'svid.pem': svid.certChainPem, 'svid-key.pem': svid.keyPem, 'bundle.pem': ca.bundle().toPem() };
    for (const [file, text] of Object.entries(all)) {
      writeFileSync(path.join(folder, file), text, { mode: 0o600 });
      chownSync(path.join(folder, file), SIDECAR_UID, SIDECAR_UID);
    }
    chownSync(folder, SIDECAR_UID, SIDECAR_UID);
    return folder;
  };
  const serviceDir = await writeConfig('service', SERVICE_ID, { 'sidecar.yaml': SERVICE_CONFIG, 'policy.yaml': POLICY });
  const agentDir = await writeConfig('agent', AGENT_ID, { 'sidecar.yaml': AGENT_CONFIG });

  const suffix = `${process.pid}`;
  const names = { service: `attest-pair-service-${suffix}`, agent: `attest-pair-agent-${suffix}`, app: `attest-pair-app-${suffix}` };
  t.teardown(async () => {
    // The namespace's owner last: podman refuses to remove a container others depend on.
    for (const name of [names.app, names.agent, names.service]) await podman(['rm', '--force', '--time', '0', name]);
  });
  /** The sidecar as the injector runs it: read-only root, no /tmp, a state volume, the config mounted read-only. */
  const sidecarFlags = (config: string) => [
    ...RUN_FLAGS,
    '--read-only', '--read-only-tmpfs=false',
    '--tmpfs', '/var/lib/attest-sidecar:rw,mode=0700,U',
    '--volume', `${config}:/etc/attest-sidecar:ro`,
  ];
  // The service's sidecar owns the shared network namespace (a pod's infra) and publishes the agent's port.
  const service = await podman(['run', '-d', '--name', names.service, ...sidecarFlags(serviceDir), '--publish', '127.0.0.1::15001', IMAGE]);
  if (service.code !== 0) throw new Error(`podman run (service): ${service.stderr}`);
  const shared = ['--network', `container:${names.service}`];
  const agent = await podman(['run', '-d', '--name', names.agent, ...sidecarFlags(agentDir), ...shared, IMAGE]);
  if (agent.code !== 0) throw new Error(`podman run (agent): ${agent.stderr}`);
  const app = await podman(['run', '-d', '--name', names.app, ...RUN_FLAGS, '--read-only', ...shared, '--entrypoint', 'node', IMAGE, '-e', APP_SCRIPT]);
  if (app.code !== 0) throw new Error(`podman run (app): ${app.stderr}`);

  const logsOf = async () => {
    const out: string[] = [];
    for (const name of Object.values(names)) {
      const l = await podman(['logs', name]);
      out.push(`--- ${name}\n${l.stdout}${l.stderr}`);
    }
    return out.join('\n');
  };
  const running = async () => {
    for (const name of Object.values(names)) {
      const s = await podman(['container', 'inspect', '--format', '{{.State.Running}}', name]);
      if (s.stdout.trim() !== 'true') throw new Error(`${name} is not running:\n${await logsOf()}`);
    }
  };

  const port = await podman(['port', names.service, '15001/tcp']);
  const hostPort = Number(/:(\d+)\s*$/.exec(port.stdout.trim())?.[1]);
  if (!(hostPort > 0)) throw new Error(`no published port: ${port.stdout} ${port.stderr}`);

  t.test('allowed request from the host through the pair (200)', async (t) => {
    // Condition-based: the first answers may be errors while the sidecars load their SVIDs.
    const allowed = await waitFor('an allowed request to pass', 90_000, async () => {
      await running();
      const r = await viaProxy(hostPort, 'GET', 'http://control-plane/agents').catch(() => undefined);
      return r?.status === 200 ? r : undefined;
    });
    const echoed = JSON.parse(allowed.body) as { url: string; headers: Record<string, string> };
    t.equal(echoed.url, '/agents');
    t.ok(Object.values(echoed.headers).some((v) => String(v).includes(AGENT_ID)), 'the app is told the caller is the agent');
  });

  t.test('denied request (403, action not permitted)', async (t) => {
    const denied = await viaProxy(hostPort, 'POST', 'http://control-plane/fuzzer/harness');
    t.equal(denied.status, 403, denied.body);
    t.same(JSON.parse(denied.body), { error: "Action 'fuzzer.write_harness' not permitted" });
  });

  t.test('both sidecars run as uid 10001 and wrote their state to the volume only', async (t) => {
    // What podman itself changes in every container (mount points of /etc/hosts and the like),
    // seen in the app container, which writes nothing.
    const baseline = await podman(['diff', names.app]);
    t.equal(baseline.code, 0, baseline.stderr);
    for (const name of [names.service, names.agent]) {
      const r = await podman(['exec', name, '/bin/sh', '-c', 'grep ^Uid: /proc/1/status; ls -A /var/lib/attest-sidecar']);
      t.equal(r.code, 0, r.stderr);
      t.match(r.stdout, /^Uid:\s+10001\s+10001\s+10001\s+10001$/m, `${name}: uid 10001`);
      const diff = await podman(['diff', name]);
      t.equal(diff.code, 0, diff.stderr);
      t.equal(diff.stdout.trim(), baseline.stdout.trim(), `${name}: nothing changed in the container's own file system`);
      t.match(r.stdout, /^sidecar$/m, `${name}: its state is on the volume`);
    }
  });

  t.test('without a state volume on the read-only root: a one-line start-up error naming the path and the fix', async (t) => {
    const r = await podman(['run', '--rm', ...RUN_FLAGS, '--read-only', '--read-only-tmpfs=false', '--network', 'none', '--volume', `${agentDir}:/etc/attest-sidecar:ro`, IMAGE]);
    t.equal(r.code, 1, r.stderr);
    t.match(r.stderr, /^attest-sidecar: cannot \S+ state directory \/var\/lib\/attest-sidecar\S*: read-only file system; mount a writable volume there .*ATTEST_SIDECAR_STATE_DIR to a writable directory$/m);
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });

  t.test('SIGTERM ends the sidecar (node as PID 1) with status 0', async (t) => {
    const stop = await podman(['stop', '--time', '60', names.agent], 90_000);
    t.equal(stop.code, 0, stop.stderr);
    const state = await podman(['container', 'inspect', '--format', '{{.State.ExitCode}}', names.agent]);
    t.equal(state.stdout.trim(), '0', 'exit status 0');
    if (state.stdout.trim() !== '0') t.comment(await logsOf());
  });
}
