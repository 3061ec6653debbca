/**
 * Every subcommand of the real executable answers --help and -h with its usage on stdout and
 * exit 0 (no file named --help is opened, no server started), and an unknown flag with a
 * one-line error naming it plus the usage, exit 2, never a stack trace.
 */
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { binPath } from '../helpers/paths.js';

const COMMANDS: [string, RegExp][] = [
  ['run', /attest-sidecar run --config FILE/],
  ['dev', /attest-sidecar dev .*--fresh/],
  ['check-policy', /attest-sidecar check-policy FILE/],
  ['inspect-evidence', /attest-sidecar inspect-evidence FILE/],
  ['verify-evidence', /attest-sidecar verify-evidence FILE/],
  ['kill', /attest-sidecar kill SPIFFE_ID/],
  ['killall', /attest-sidecar killall/],
  ['restore', /attest-sidecar restore SPIFFE_ID \| --all/],
  ['audit', /attest-sidecar audit verify FILE/],
  ['inject', /attest-sidecar inject \[-f FILE \.\.\.\]/],
  ['injector', /attest-sidecar injector --listen ADDR --cert FILE --key FILE/],
  ['version', /attest-sidecar version/],
];

function cli(...args: string[]) {
  // A bogus admin URL and token file: a command that wrongly ran instead of printing help fails.
  const r = spawnSync(process.execPath, [binPath, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ATTEST_SIDECAR_DEV_STATE: '/nonexistent/attest-help-test' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

for (const [cmd, usage] of COMMANDS) {
  t.test(cmd, async (t) => {
    // -h is the same code path; checked on a few commands to keep the process count down.
    for (const flag of ['run', 'check-policy', 'kill'].includes(cmd) ? ['--help', '-h'] : ['--help']) {
      const r = cli(cmd, flag);
      t.equal(r.status, 0, `${cmd} ${flag} exits 0 (stderr: ${r.stderr.trim()})`);
      t.match(r.stdout, /^Usage:\n/, `${cmd} ${flag} prints its usage`);
      t.match(r.stdout, usage);
      t.equal(r.stderr, '', 'nothing on stderr');
    }
    const bogus = cli(cmd, '--no-such-flag');
    t.equal(bogus.status, 2, `${cmd} --no-such-flag exits 2`);
    const first = bogus.stderr.split('\n')[0]!;
    t.match(first, new RegExp(`^attest-sidecar ${cmd}: .*'?--no-such-flag`), 'one line naming the command and the flag');
    t.match(bogus.stderr, usage, 'followed by the usage');
    t.notMatch(bogus.stderr, /\n\s+at /, 'no stack trace');
  });
}

t.test('help after a real argument, help topics, and -- ends option parsing', async (t) => {
  const r = cli('check-policy', 'policy.yaml', '--help');
  t.equal(r.status, 0);
  t.match(r.stdout, /check-policy FILE/);
  const topic = cli('help', 'kill');
  t.equal(topic.status, 0);
  t.match(topic.stdout, /^Usage:\n {2}attest-sidecar kill SPIFFE_ID/);
  const top = cli('--help');
  t.equal(top.status, 0);
  t.match(top.stdout, /npx attest-sidecar/, 'the top-level usage says how to run it from a checkout');
  const operand = cli('check-policy', '--', '--help');
  t.equal(operand.status, 1, 'after --, --help is a file name (which does not exist)');
  t.match(operand.stderr, /--help/);
  const unknown = cli('frobnicate');
  t.equal(unknown.status, 2);
  t.match(unknown.stderr, /^attest-sidecar: unknown command 'frobnicate'/);
});
