/** The text `attest-sidecar dev` prints once the mesh is up: where things are and what to try. */
import type { DevMesh } from '../mesh/mesh.js';
import { carriedOverState } from '../mesh/state.js';
import { DEFAULT_ADMIN } from './kill.js';

export function devMeshBanner(mesh: DevMesh): string {
  const lines: string[] = [];
  lines.push('');
  lines.push(`attest-sidecar dev mesh is up (DEVELOPMENT ONLY): trust domain ${mesh.spec.trustDomain}`);
  if (mesh.app) lines.push(`  demo app        http://${hostPort(mesh.app.address())}`);
  const outbound: { name: string; addr: string }[] = [];
  for (const [name, s] of mesh.sidecars) {
    const parts: string[] = [];
    const id = s.status().spiffe_id as string | null;
    if (s.inbound?.address()) parts.push(`inbound mTLS ${hostPort(s.inbound.address()!)} -> ${s.config.inbound!.app}`);
    if (s.outbound?.address()) {
      const addr = hostPort(s.outbound.address()!);
      parts.push(`outbound http://${addr}`);
      outbound.push({ name, addr });
    }
    if (s.admin?.address()) parts.push(`admin http://${hostPort(s.admin.address()!)}`);
    lines.push(`  ${name.padEnd(15)} ${id ?? '(no SVID yet)'}`);
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
  const admin = [...mesh.sidecars.values()].find((s) => s.admin?.address() && s.inbound);
  if (admin) {
    const a = hostPort(admin.admin!.address()!);
    lines.push(`  open http://${a}/           # status page: identity countdown, peers, denials, budgets, kill buttons`);
    lines.push(`  curl http://${a}/status     # the same as JSON`);
    lines.push(`  curl http://${a}/metrics    # Prometheus`);
    if (orch) {
      lines.push(`  curl -x http://${orch.addr} -X POST http://control-plane/tasks -d '{}'   # 201, charged $0.25 of ${orch.name}'s $5/day budget`);
    }
    // The kill commands' default admin address; any other (e.g. --free-ports) is spelled out.
    const adminFlag = a === DEFAULT_ADMIN ? '' : ` --admin http://${a}`;
    lines.push('', 'Kill switch (the admin token is in ' + mesh.stateDir + '/admin-token):');
    lines.push(`  npx attest-sidecar kill spiffe://${mesh.spec.trustDomain}/ns/agent-swarm/sa/orchestrator${adminFlag}   # its requests now get 403 Agent revoked`);
    lines.push(`  npx attest-sidecar restore spiffe://${mesh.spec.trustDomain}/ns/agent-swarm/sa/orchestrator${adminFlag}`);
    lines.push(`  (revocations and spend persist in ${mesh.stateDir} across restarts; \`attest-sidecar dev --fresh\` starts clean)`);
  }
  const carried = carriedOverState(mesh.sidecars);
  if (carried.length) {
    lines.push('', `State from earlier runs is in force (${mesh.stateDir}):`);
    for (const line of carried) lines.push(`  ${line}`);
    lines.push('  Start clean with: npx attest-sidecar dev --fresh   (deletes revocations, budget spend and the admin token)');
  }
  lines.push('', 'Press Ctrl-C to stop.', '');
  return lines.join('\n');
}

function hostPort(a: { address: string; port: number }): string {
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}
