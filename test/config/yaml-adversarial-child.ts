/**
 * Child process of yaml-limits.test.ts: loads each adversarial input named on the command line
 * and prints one JSON line per input with what came back (the parent bounds the whole run).
 */
import { compilePolicy } from '../../src/policy/compile.js';
import { parseSharedList } from '../../src/revocation/shared-file.js';
import { ProblemsError } from '../../src/lib/yaml-reader.js';

const AGENT = 'agent_policy:\n  name: a\n  spiffe_id: spiffe://td/a\n  allowed_actions: [x]\n';

/** Inputs that took seconds to minutes before loading was made linear. */
export const INPUTS: Record<string, () => { text: string; kind: 'policy' | 'shared' }> = {
  // ~20 KB, 5,000 aliases of one anchor.
  'aliases-5000': () => ({ text: `${AGENT}admins: &x []\nextra:\n${'  - *x\n'.repeat(5000)}`, kind: 'policy' }),
  // 100k distinct keys in one mapping (a shared list: its cap is 4 MiB).
  'keys-100k': () => ({ text: `revoked: []\nall:\n${Array.from({ length: 100_000 }, (_, i) => `  k${i}: 1\n`).join('')}`, kind: 'shared' }),
  // 100k copies of one key in one mapping.
  'duplicate-keys-100k': () => ({ text: `revoked: []\nall:\n${'  reason: x\n'.repeat(100_000)}`, kind: 'shared' }),
  // 10,000 nested flow lists.
  'deep-10000': () => ({ text: `${AGENT}admins: ${'['.repeat(10_000)}${']'.repeat(10_000)}\n`, kind: 'policy' }),
  // A valid policy of over 80 KB (1,000 agents).
  'policy-80k': () => ({
    text: `agents:\n${Array.from({ length: 1000 }, (_, i) => `  - name: a${i}\n    spiffe_id: spiffe://td/a${i}\n    allowed_actions: [things.read, things.write]\n`).join('')}`,
    kind: 'policy',
  }),
};

for (const name of process.argv.slice(2)) {
  const { text, kind } = INPUTS[name]!();
  let result: object;
  try {
    if (kind === 'policy') result = { ok: true, agents: compilePolicy(text, `${name}.yaml`).agents.length };
    else result = { ok: true, revoked: parseSharedList(text, `${name}.yaml`, { now: () => 0 }).byId.size };
  } catch (err) {
    const e = err as ProblemsError;
    result = { ok: false, typed: err instanceof ProblemsError, reason: e.reason, problems: e.problems?.length, first: e.problems?.[0] };
  }
  process.stdout.write(`${JSON.stringify({ name, bytes: text.length, ...result })}\n`);
}
