/** The text `attest-sidecar dev` prints once the mesh is up: where things are and what to try. */
import type { MeshView } from '../mesh/view.js';
import { DEFAULT_ADMIN } from './kill.js';

export function devMeshBanner(mesh: MeshView): string {
  const lines: string[] = [];
  lines.push('');
  lines.push(`attest-sidecar dev mesh is up (DEVELOPMENT ONLY): trust domain ${mesh.trustDomain}`);
  if (mesh.spire) lines.push(...spireLines(mesh.spire));
  if (mesh.app) lines.push(`  demo app        http://${hostPort(mesh.app)}`);
  const outbound: { name: string; addr: string }[] = [];
  for (const s of mesh.sidecars) {
    const parts: string[] = [];
    if (s.inbound) parts.push(`inbound mTLS ${hostPort(s.inbound.address)} -> ${s.inbound.app}`);
    if (s.outbound) {
      const addr = hostPort(s.outbound);
      parts.push(`outbound http://${addr}`);
      outbound.push({ name: s.name, addr });
    }
    if (s.admin) parts.push(`admin http://${hostPort(s.admin)}`);
    if (s.pid !== undefined) parts.push(`pid ${s.pid}`);
    lines.push(`  ${s.name.padEnd(15)} ${s.spiffeId ?? '(no SVID yet)'}`);
    lines.push(`  ${''.padEnd(15)} ${parts.join(', ')}`);
  }
  const orch = outbound.find((o) => o.name === 'orchestrator') ?? outbound[0];
  const writer = outbound.find((o) => o.name === 'harness-writer');
  const intruder = outbound.find((o) => o.name === 'intruder');
  lines.push('', 'Try:');
  if (orch) {
    lines.push(`  curl -x http://${orch.addr} http://control-plane/agents                  # 200: ${orch.name} may agent.list`);
    lines.push(`  curl -x http://${orch.addr} -X POST http://control-plane/fuzzer/harness  # 403: Action 'fuzzer.write_harness' not permitted`);
  }
  if (writer) lines.push(`  curl -x http://${writer.addr} -X POST http://control-plane/fuzzer/harness -d '{}'  # 201: harness-writer may`);
  if (intruder) lines.push(`  curl -x http://${intruder.addr} http://control-plane/agents                  # 403: Unknown agent (valid SVID, no policy)`);
  const admin = mesh.sidecars.find((s) => s.admin && s.inbound);
  if (admin) {
    const a = hostPort(admin.admin!);
    lines.push(`  open http://${a}/           # status page: identity countdown, peers, denials, budgets, kill buttons`);
    lines.push(`  curl http://${a}/status     # the same as JSON`);
    lines.push(`  curl http://${a}/metrics    # Prometheus`);
    if (orch) {
      lines.push(`  curl -x http://${orch.addr} -X POST http://control-plane/tasks -d '{}'   # 201, charged $0.25 of ${orch.name}'s $5/day budget`);
    }
    // The kill commands' default admin address; any other (e.g. --free-ports) is spelled out.
    const adminFlag = a === DEFAULT_ADMIN ? '' : ` --admin http://${a}`;
    const orchestratorId = `spiffe://${mesh.trustDomain}/ns/agent-swarm/sa/orchestrator`;
    lines.push('', 'Kill switch (the admin token is in ' + mesh.stateDir + '/admin-token):');
    lines.push(`  npx attest-sidecar kill ${orchestratorId}${adminFlag}   # its requests now get 403 Agent revoked`);
    lines.push(`  npx attest-sidecar restore ${orchestratorId}${adminFlag}`);
    if (mesh.spire) {
      const spireFlag = ` --spire-server-socket unix://${mesh.spire.serverSocket}`;
      lines.push(`  npx attest-sidecar kill ${orchestratorId}${adminFlag}${spireFlag}`);
      lines.push('      # also deletes its SPIRE entry: its SVID is not renewed (restore with the same flag re-creates it)');
    }
    lines.push(`  (revocations and spend persist in ${mesh.stateDir} across restarts; \`attest-sidecar dev --fresh\` starts clean)`);
  }
  if (mesh.carriedOver.length) {
    lines.push('', `State from earlier runs is in force (${mesh.stateDir}):`);
    for (const line of mesh.carriedOver) lines.push(`  ${line}`);
    lines.push('  Start clean with: npx attest-sidecar dev --fresh   (deletes revocations, budget spend and the admin token)');
  }
  lines.push('', 'Press Ctrl-C to stop.', '');
  return lines.join('\n');
}

function spireLines(spire: NonNullable<MeshView['spire']>): string[] {
  const lines = [
    `  identities from a real SPIRE server and agent (${spire.binDir}); their logs and data in ${spire.dir}`,
    `  spire-server    pid ${spire.serverPid ?? '-'}, admin socket unix://${spire.serverSocket}`,
    `  spire-agent     pid ${spire.agentPid ?? '-'}, Workload API unix://${spire.workloadSocket}`,
    '  registration entries (each sidecar runs under its own node binary):',
  ];
  for (const e of spire.entries) lines.push(`    ${e.name.padEnd(15)} ${e.entryId}  ${e.spiffeId}  x509 TTL ${e.x509SvidTtlSeconds}s  ${e.selector}`);
  return lines;
}

function hostPort(a: { address: string; port: number }): string {
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}
