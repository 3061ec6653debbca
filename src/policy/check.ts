/**
 * `attest-sidecar check-policy FILE`: validate a policy without starting anything.
 * Exit 0 with a summary, or 1 with one `file:line:column: message` line per problem.
 */
import { errorMessage } from '../errors.js';
import { formatProblem } from '../lib/yaml-reader.js';
import { loadPolicyFile, PolicyError } from './compile.js';

export function checkPolicyCommand(file: string): { exitCode: number; output: string } {
  try {
    const policy = loadPolicyFile(file);
    const actions = new Set<string>();
    let attested = 0;
    for (const agent of policy.agents) {
      for (const a of agent.allowedActions) actions.add(a);
      if (agent.attestation) attested++;
    }
    const ids = policy.agentsBySpiffeId.size;
    const lines = [
      `OK ${file}: ${plural(policy.agents.length, 'agent')} (${plural(ids, 'SPIFFE ID')}, ${attested} requiring attestation), ` +
        `${plural(actions.size, 'distinct action')}, ${plural(policy.admins.size, 'admin')}, version ${policy.version}`,
    ];
    for (const agent of policy.agents) {
      lines.push(`  ${agent.name}: ${[...agent.allowedActions].join(', ') || '(no actions)'}`);
    }
    return { exitCode: 0, output: `${lines.join('\n')}\n` };
  } catch (err) {
    if (err instanceof PolicyError) {
      return { exitCode: 1, output: `${err.problems.map(formatProblem).join('\n')}\n` };
    }
    return { exitCode: 1, output: `${file}: ${errorMessage(err)}\n` };
  }
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
