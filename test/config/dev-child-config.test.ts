/**
 * The config a dev mesh sidecar runs with as its own process (dev --spire): written elsewhere
 * than the original, it must load to the same settings except what the mesh owns (identity,
 * listeners and references, state, admin token, log level, the mesh's sim key).
 */
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { loadConfigFile, parseConfig } from '../../src/config/load.js';
import { childConfigYaml } from '../../src/mesh/child-config.js';
import { PortMap } from '../../src/mesh/ports.js';
import { repoRoot } from '../helpers/paths.js';

const dir = mkdtempSync(path.join(tmpdir(), 'attest-child-config-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const overrides = {
  name: 'svc',
  workloadSocket: '/tmp/spire-x/a.sock',
  stateDir: '/tmp/state/svc',
  adminTokenFile: '/tmp/state/admin-token',
  logLevel: 'info',
  simKeyFile: '/tmp/spire-x/mesh/sim-key.pem',
  simPublicKeyFile: '/tmp/spire-x/mesh/sim-key.pub.pem',
};

t.test('relative paths become absolute; identity, listeners, references and keys are the mesh\'s', async (t) => {
  const confDir = path.join(dir, 'conf');
  mkdirSync(path.join(confDir, 'keys'), { recursive: true });
  writeFileSync(path.join(confDir, 'policy.yaml'), 'agents: []\n');
  const file = path.join(confDir, 'svc.yaml');
  writeFileSync(
    file,
    `# a comment the copy keeps
name: svc
identity: { source: dev, spiffe_id: spiffe://mesh.test/svc, startup_timeout: 45s }
inbound:
  listen: 127.0.0.1:15443
  app: http://127.0.0.1:8080
  actions:
    - { method: GET, path: /policy, action: policy.yaml }
policy: policy.yaml
admin: { listen: 127.0.0.1:15000 }
log: { audit: audit/svc.jsonl }
attestation:
  attester: { type: sim, measurement: "${'ab'.repeat(48)}" }
  verifier: { sim_keys: [keys/other.pem] }
`,
  );
  const loaded = loadConfigFile(file);
  const ports = new PortMap(true);
  const yaml = childConfigYaml(ports.config(loaded), overrides);
  t.match(yaml, /# a comment the copy keeps/);
  // Loaded as if it lived in another folder: nothing may resolve against that one.
  const child = parseConfig(yaml, path.join(dir, 'elsewhere', 'svc.yaml'), {});
  t.same(child.identity, { source: 'workload-api', socket: 'unix:///tmp/spire-x/a.sock', startupTimeoutMs: 45_000 });
  t.equal(child.policy, path.join(confDir, 'policy.yaml'));
  t.equal(child.log.audit, path.join(confDir, 'audit/svc.jsonl'));
  t.equal(child.log.level, 'info');
  t.equal(child.stateDir, '/tmp/state/svc');
  t.equal(child.admin?.tokenFile, '/tmp/state/admin-token');
  t.same(child.inbound?.listen, { host: '127.0.0.1', port: 0 }, 'free ports: port 0');
  t.same(child.admin?.listen, { host: '127.0.0.1', port: 0 });
  t.equal(child.inbound?.actions[0]?.action, 'policy.yaml', 'a value that is not a path stays as written, even one that names a file');
  t.match(child.attestation?.attester, { type: 'sim', key: overrides.simKeyFile });
  t.same((child.attestation?.verifier as { simKeys?: string[] } | undefined)?.simKeys, [path.join(confDir, 'keys/other.pem'), overrides.simPublicKeyFile]);
});

t.test('the dev mesh files: upstreams follow the real ports; a sim key is added where none is named', async (t) => {
  const orchestrator = loadConfigFile(path.join(repoRoot, 'config/dev/orchestrator.yaml'));
  const ports = new PortMap(true);
  ports.record({ host: '127.0.0.1', port: 15443 }, { address: '127.0.0.1', port: 40001 });
  const child = parseConfig(childConfigYaml(ports.config(orchestrator), { ...overrides, name: 'orchestrator' }), path.join(dir, 'o.yaml'), {});
  t.equal(child.outbound?.routes[0]?.upstream, 'https://127.0.0.1:40001');
  t.equal(child.outbound?.routes[0]?.serverId, 'spiffe://agent-mesh.local/ns/agent-swarm/sa/control-plane');
  t.same(child.outbound?.listen, { host: '127.0.0.1', port: 0 });
  t.match(child.attestation?.attester, { type: 'sim', key: overrides.simKeyFile, guestSvn: 2 });
  t.equal(child.attestation?.verifier, undefined, 'an outbound-only sidecar verifies no evidence');

  const fixed = parseConfig(childConfigYaml(new PortMap(false).config(orchestrator), { ...overrides, name: 'orchestrator' }), path.join(dir, 'o.yaml'), {});
  t.same(fixed.outbound?.listen, { host: '127.0.0.1', port: 15001 }, 'without free ports the file\'s ports');
  t.equal(fixed.outbound?.routes[0]?.upstream, 'https://127.0.0.1:15443');
});
