import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { REASONS, type ReasonCode } from '../../src/reasons.js';
import { REGION_BEGIN, REGION_END, readmeDenialTable, reasonsMarkdown, replaceRegion } from '../../src/reasons-doc.js';
import { repoRoot } from '../helpers/paths.js';

const run = promisify(execFile);
const FIX = 'run `npm run docs:reasons` after changing src/reasons.ts';

t.test('docs/reasons.md is what the catalogue generates', async (t) => {
  const current = readFileSync(path.join(repoRoot, 'docs/reasons.md'), 'utf8');
  t.equal(current, reasonsMarkdown(), FIX);
});

t.test("the README's denial table is what the catalogue generates", async (t) => {
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  t.equal(replaceRegion(readme, readmeDenialTable()), readme, FIX);
});

t.test('docs/reasons.md lists every code once, with its status and body', async (t) => {
  const doc = reasonsMarkdown();
  for (const code of Object.keys(REASONS) as ReasonCode[]) {
    const spec: { status?: number; message: string } = REASONS[code];
    const rows = doc.split('\n').filter((l) => l.includes(`| \`${code}\` |`));
    t.equal(rows.length, 1, `${code}: one row`);
    if (spec.status !== undefined) {
      t.ok(rows[0]!.startsWith(`| ${spec.status} | \`{"error": ${JSON.stringify(spec.message).replaceAll('|', '\\|')}}\``), `${code}: status and body`);
    }
  }
});

t.test('the README table holds every request and attestation refusal', async (t) => {
  const table = readmeDenialTable();
  for (const code of Object.keys(REASONS) as ReasonCode[]) {
    const kind = REASONS[code].kind;
    if (kind === 'request' || kind === 'attestation') t.ok(table.includes(`\`${code}\``), code);
  }
  t.ok(table.includes('| 403 | `{"error": "Action \'fuzzer.write_harness\' not permitted"}` |'), 'examples stand in for patterns');
});

t.test('replaceRegion: only between the markers, and refuses text without them', async (t) => {
  const text = `before\n${REGION_BEGIN}\nold\n${REGION_END}\nafter\n`;
  t.equal(replaceRegion(text, 'new'), `before\n${REGION_BEGIN}\nnew\n${REGION_END}\nafter\n`);
  t.throws(() => replaceRegion('no markers', 'x'), /missing/);
  t.throws(() => replaceRegion(`${REGION_END}\n${REGION_BEGIN}`, 'x'), /out of order/);
  t.throws(() => replaceRegion(`${REGION_BEGIN}${REGION_BEGIN}${REGION_END}`, 'x'), /more than once/);
});

t.test('the docs:reasons command runs from dist and finds the files current', async (t) => {
  const cli = path.join(repoRoot, 'dist/src/reasons-doc-cli.js');
  const result = await run(process.execPath, [cli, '--check'], { timeout: 60_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, output: stdout + stderr }),
    (err: { code?: number; stdout?: string; stderr?: string }) => ({ code: err.code, output: `${err.stdout ?? ''}${err.stderr ?? ''}` }),
  );
  t.same(result, { code: 0, output: '' }, FIX);
});
