/**
 * YAML loading is linear in the file: the inputs that used to take seconds (thousands of
 * aliases, huge mappings, deep nesting) load or fail with a typed error naming file:line:col.
 * They run in a child process whose only bound is a generous hang guard, not a timing claim.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { MAX_LISTED_PROBLEMS, ProblemsError, YamlReader } from '../../src/lib/yaml-reader.js';
import { MAX_YAML_ALIASES, MAX_YAML_DEPTH, MAX_YAML_FILE_BYTES } from '../../src/lib/yaml-limits.js';
import { loadConfigFile } from '../../src/config/load.js';
import { loadPolicyFile, PolicyError } from '../../src/policy/compile.js';
import { ConfigError } from '../../src/errors.js';
import { MAX_SHARED_REVOCATION_BYTES, parseSharedList } from '../../src/revocation/shared-file.js';
import type { Node } from 'yaml';

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'yaml-adversarial-child.js');

function runChild(names: string[]): Promise<Record<string, Record<string, unknown>>> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, ...names], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    // A hang guard, not a performance claim: the quadratic loaders ran for minutes on these.
    const guard = setTimeout(() => p.kill('SIGKILL'), 120_000);
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    p.on('error', reject);
    p.on('exit', (code, signal) => {
      clearTimeout(guard);
      if (code !== 0) return reject(new Error(`child exited ${code ?? signal}: ${err}`));
      const results: Record<string, Record<string, unknown>> = {};
      for (const line of out.trim().split('\n')) {
        const r = JSON.parse(line) as { name: string };
        results[r.name] = r;
      }
      resolve(results);
    });
  });
}

t.test('adversarial files finish with a typed error or a result', async (t) => {
  const r = await runChild(['aliases-5000', 'keys-100k', 'duplicate-keys-100k', 'deep-10000', 'policy-80k']);
  t.match(r['aliases-5000'], {
    ok: false,
    typed: true,
    reason: 'policy_invalid',
    problems: 1,
    first: { file: 'aliases-5000.yaml', line: 6 + MAX_YAML_ALIASES + 1, column: 5, message: `more than ${MAX_YAML_ALIASES} aliases (*x); write the values out instead` },
  });
  // 100k distinct keys are read (and refused as unknown keys: each one named, in one pass).
  t.match(r['keys-100k'], { ok: false, typed: true, reason: 'revocations_unreadable', problems: 100_000, first: { line: 3, column: 3, key: 'all.k0', message: /unknown key 'k0'/ } });
  t.match(r['duplicate-keys-100k'], {
    ok: false,
    typed: true,
    problems: 99_999,
    first: { line: 4, column: 3, key: 'all.reason', message: "Map keys must be unique: 'reason' is already set on line 3" },
  });
  t.match(r['deep-10000'], { ok: false, typed: true, reason: 'policy_invalid', first: { file: 'deep-10000.yaml', line: 5 } });
  t.match(r['policy-80k'], { ok: true, agents: 1000 });
  t.ok((r['policy-80k']!.bytes as number) > 80_000);
});

t.test('an error message lists at most MAX_LISTED_PROBLEMS problems; all stay on the error', async (t) => {
  const text = `revoked: []\nall:\n${Array.from({ length: 70 }, (_, i) => `  k${i}: 1\n`).join('')}`;
  const err = t.throws(() => parseSharedList(text, 's.yaml', { now: () => 0 })) as ProblemsError;
  t.equal(err.problems.length, 70);
  const lines = err.message.split('\n');
  t.equal(lines[0], '70 problems:');
  t.equal(lines.length, 1 + MAX_LISTED_PROBLEMS + 1);
  t.equal(lines[lines.length - 1], `... and ${70 - MAX_LISTED_PROBLEMS} more`);
});

t.test('an alias names the last anchor of its name before it; unknown ones are reported', async (t) => {
  const { reader, documents } = YamlReader.parse('a: &x one\nb: *x\nc: &x two\nd: *x\ne: *y\n', 'f.yaml');
  reader.useDocument(documents[0]!);
  const m = reader.map({ path: '', node: documents[0]!.contents as Node }, null)!;
  t.same(['b', 'd'].map((k) => reader.string(m.get(k)!)), ['one', 'two']);
  t.equal(reader.string(m.get('e')!), undefined);
  t.match(reader.problems, [{ line: 5, column: 4, key: 'e', message: "unknown alias '*y'" }]);
});

t.test('nesting deeper than the cap is refused at the spot', async (t) => {
  // The top mapping is the first level: MAX_YAML_DEPTH lists inside it are one level too many.
  const depth = MAX_YAML_DEPTH;
  const { reader, documents } = YamlReader.parse(`a: ${'['.repeat(depth)}${']'.repeat(depth)}\n`, 'f.yaml');
  t.equal(documents.length, 0);
  t.match(reader.problems, [{ file: 'f.yaml', line: 1, column: 4 + MAX_YAML_DEPTH - 1, message: `nested more than ${MAX_YAML_DEPTH} levels deep` }]);
  const ok = YamlReader.parse(`a: ${'['.repeat(MAX_YAML_DEPTH - 1)}${']'.repeat(MAX_YAML_DEPTH - 1)}\n`, 'f.yaml');
  t.equal(ok.documents.length, 1, 'just under the cap loads');
});

t.test('files over their size cap are refused before parsing, with a typed error', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'yaml-cap-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const big = path.join(dir, 'big.yaml');
  writeFileSync(big, `# ${'x'.repeat(MAX_YAML_FILE_BYTES)}\n`);
  const size = MAX_YAML_FILE_BYTES + 3;
  const policyErr = t.throws(() => loadPolicyFile(big)) as PolicyError;
  t.ok(policyErr instanceof PolicyError);
  t.equal(policyErr.message, `${big}: is ${size} bytes, over the limit of ${MAX_YAML_FILE_BYTES} bytes (1 MiB)`);
  const configErr = t.throws(() => loadConfigFile(big)) as ConfigError;
  t.ok(configErr instanceof ConfigError);
  t.equal(configErr.reason, 'config_invalid');
  t.match(configErr.message, /over the limit of 1048576 bytes/);

  const shared = `revoked: []\n# ${'x'.repeat(MAX_SHARED_REVOCATION_BYTES)}\n`;
  t.throws(() => parseSharedList(shared, 'shared.yaml', { now: () => 0 }), { reason: 'revocations_unreadable', message: /over the limit of 4194304 bytes \(4 MiB\)/ });
  // Multi-byte text is measured in UTF-8 bytes, not characters.
  const wide = `# ${'é'.repeat(MAX_YAML_FILE_BYTES / 2)}\n`;
  t.match(YamlReader.parse(wide, 'w.yaml').reader.problems, [{ message: /over the limit/ }]);
});
