/**
 * `npm run fuzz -- [--target NAME]... [--seconds N] [--iterations N] [--seed S] [--crash-dir DIR]`
 * fuzzes every target (or the named ones) for N seconds each (default 60), and exits 1 when any
 * input gave something other than a result or a typed error. `--replay FILE` re-runs one saved
 * finding in this process; `--list` names the targets.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { classifyThrown } from './target.js';
import { failures, runTarget, type TargetReport } from './runner.js';
import { TARGETS, targetNamed } from './targets/index.js';
import { repoRoot } from '../test/helpers/paths.js';

async function replay(file: string): Promise<number> {
  const f = JSON.parse(readFileSync(file, 'utf8')) as { target: string; inputBase64: string };
  const target = targetNamed(f.target);
  if (!target) throw new Error(`unknown target ${f.target}`);
  const prepared = await target.prepare();
  const input = Buffer.from(f.inputBase64, 'base64');
  const started = process.cpuUsage();
  try {
    await prepared.run(input);
    process.stdout.write(`${f.target}: ok\n`);
  } catch (err) {
    const c = classifyThrown(err);
    process.stdout.write(c.kind === 'typed' ? `${f.target}: typed error ${c.reason}: ${(err as Error).message}\n` : `${f.target}: UNTYPED ${c.error}\n`);
    if (c.kind !== 'typed') console.error(err);
  }
  const used = process.cpuUsage(started);
  process.stdout.write(`CPU ${Math.round((used.user + used.system) / 1000)} ms\n`);
  return 0;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      target: { type: 'string', multiple: true },
      seconds: { type: 'string' },
      iterations: { type: 'string' },
      seed: { type: 'string' },
      'crash-dir': { type: 'string' },
      replay: { type: 'string' },
      list: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.list) {
    for (const t of TARGETS) process.stdout.write(`${t.name.padEnd(28)} ${t.about}\n`);
    return 0;
  }
  if (values.replay) return replay(values.replay);
  const names = values.target?.flatMap((t) => t.split(',')) ?? TARGETS.map((t) => t.name);
  const unknown = names.filter((n) => !targetNamed(n));
  if (unknown.length) throw new Error(`unknown target(s) ${unknown.join(', ')}; --list names them`);
  const seed = values.seed !== undefined ? Number(values.seed) >>> 0 : (Date.now() ^ (process.pid << 16)) >>> 0;
  const iterations = values.iterations !== undefined ? Number(values.iterations) : undefined;
  const seconds = iterations === undefined ? Number(values.seconds ?? 60) : values.seconds !== undefined ? Number(values.seconds) : undefined;
  const crashDir = path.resolve(values['crash-dir'] ?? path.join(repoRoot, 'fuzz-crashes'));
  process.stdout.write(`fuzz: seed ${seed}, ${names.length} target(s), ${iterations !== undefined ? `${iterations} inputs` : `${seconds} s`} each; findings in ${crashDir}\n`);
  const reports: TargetReport[] = [];
  for (const name of names) {
    const r = await runTarget(name, { seed, ...(iterations !== undefined ? { iterations } : {}), ...(seconds !== undefined ? { seconds } : {}), crashDir, log: (l) => process.stdout.write(`${l}\n`) });
    reports.push(r);
    const reasons = Object.entries(r.reasons).sort((a, b) => b[1] - a[1]).slice(0, 6).map(([k, v]) => `${k} ${v}`).join(', ');
    process.stdout.write(`${name}: ${r.iterations} inputs, ${r.counts.ok ?? 0} ok, ${r.counts.typed ?? 0} typed (${reasons}), ${r.findings.length} finding(s)\n`);
  }
  const failed = failures(reports);
  process.stdout.write(failed.length ? `fuzz: ${failed.length} finding(s); replay with npm run fuzz -- --replay FILE\n` : 'fuzz: no findings\n');
  return failed.length ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`fuzz: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  },
);
