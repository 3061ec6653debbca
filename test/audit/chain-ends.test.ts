/**
 * Both ends of a chain: records removed from the start are caught by the genesis requirement
 * (or checked from an anchor), records removed from the end by an anchored head; in mixed mode
 * each chain is verified on its own, so interleaved sidecars verify and a forged segment
 * prepended to a sidecar's chain is caught.
 */
import path from 'node:path';
import { PassThrough } from 'node:stream';
import t, { type Test } from 'tap';
import { JsonLinesAuditSink } from '../../src/audit/sink.js';
import { lineHash } from '../../src/audit/chain.js';
import { verifyAuditChain } from '../../src/audit/verify.js';
import { auditCommand } from '../../src/cli/audit.js';
import { decision, fileLines, joinLines, tempDir, writeChain } from './fixtures.js';

async function chain(t: Test, count: number, name = 'sc'): Promise<string[]> {
  const file = path.join(tempDir(t), `${name}.log`);
  await writeChain(file, count, 0, name);
  return fileLines(file);
}

t.test('removing leading records is detected, with or without the head anchored', async (t) => {
  const lines = await chain(t, 20);
  const head = { seq: 20, head: lineHash(Buffer.from(lines[20]!)) };
  t.ok((await verifyAuditChain(joinLines(lines), { expect: head })).ok, 'the whole chain verifies');
  for (const drop of [1, 5]) {
    const r = await verifyAuditChain(joinLines(lines.slice(drop)), { expect: head });
    t.notOk(r.ok, `${drop} leading record(s) removed`);
    t.match(r.errors, [{ line: 1, seq: drop, reason: 'chain_start_missing', detail: new RegExp(`starts at seq ${drop} without its genesis record`) }]);
    t.equal(r.errorCount, 1, 'the anchored head itself still matches: only the start is wrong');
  }
});

t.test('a rotated log verifies from an anchored record, and only from it', async (t) => {
  const lines = await chain(t, 20);
  const rotated = joinLines(lines.slice(8));
  const anchor = { seq: 7, hash: lineHash(Buffer.from(lines[7]!)) };
  t.ok((await verifyAuditChain(rotated, { from: anchor })).ok, 'starts with the record after the anchor');
  t.ok((await verifyAuditChain(joinLines(lines.slice(7)), { from: anchor })).ok, 'or with the anchored record itself');
  const r = await verifyAuditChain(joinLines(lines.slice(9)), { from: anchor });
  t.match(r.errors, [{ line: 1, seq: 9, reason: 'chain_start_missing' }], 'one record more removed after rotation');
});

t.test('removing trailing records is detected by the anchored head', async (t) => {
  const lines = await chain(t, 20);
  const head = { seq: 20, head: lineHash(Buffer.from(lines[20]!)) };
  const r = await verifyAuditChain(joinLines(lines.slice(0, -2)), { expect: head });
  t.match(r.errors, [{ reason: 'anchor_missing', seq: 20 }]);
  t.equal(r.errorCount, 1);
});

/** Lines of several sinks on one stdout-like stream, interleaved as their turns come. */
function interleave(chains: string[][]): string[] {
  const out: string[] = [];
  const pos = chains.map(() => 0);
  const total = chains.reduce((n, c) => n + c.length, 0);
  let taken = 0;
  for (let round = 0; taken < total; round++) {
    chains.forEach((c, i) => {
      for (let k = 0; k <= (round + i) % 3 && pos[i]! < c.length; k++, taken++) out.push(c[pos[i]!++]!);
    });
    out.push(JSON.stringify({ level: 30, time: 'x', msg: `pino ${round}` }));
  }
  return out;
}

t.test('mixed mode: four sidecars interleaved on one stream verify, each chain on its own', async (t) => {
  const chains = [await chain(t, 12, 'control-plane'), await chain(t, 7, 'orchestrator'), await chain(t, 9, 'harness-writer'), await chain(t, 3, 'intruder')];
  const text = joinLines(interleave(chains));
  t.notOk((await verifyAuditChain(text)).ok, 'strict mode refuses the mix');
  const r = await verifyAuditChain(text, { mixed: true });
  t.ok(r.ok, JSON.stringify(r.errors.slice(0, 3)));
  t.equal(r.segments, 4);
  t.same(
    r.chains.map((c) => [c.sidecar, c.records, c.firstSeq, c.lastSeq, c.headHash]),
    chains.map((c) => [JSON.parse(c[0]!).sidecar, c.length, 0, c.length - 1, lineHash(Buffer.from(c[c.length - 1]!))]),
  );
  // Restarts: a sidecar's second chain (new ID, own genesis) is one more chain, not an error.
  const again = await chain(t, 4, 'orchestrator');
  const r2 = await verifyAuditChain(text + joinLines(again), { mixed: true });
  t.ok(r2.ok);
  t.equal(r2.segments, 5);
  // One removed record inside one sidecar's chain is found, and attributed to that chain.
  const damaged = interleave(chains).filter((l) => l !== chains[2]![4]);
  const r3 = await verifyAuditChain(joinLines(damaged), { mixed: true });
  t.match(r3.errors, [{ reason: 'seq_gap', seq: 5, chain: JSON.parse(chains[2]![0]!).chain }]);
  t.equal(r3.errorCount, 1);
});

t.test('mixed mode: a forged segment prepended to a sidecar chain is detected', async (t) => {
  const real = await chain(t, 10, 'orchestrator');
  const id = JSON.parse(real[0]!).chain as string;
  // A forger writes a whole fake chain (genesis included) under the real chain's ID.
  const forgedFile = path.join(tempDir(t), 'forged.log');
  const forger = new JsonLinesAuditSink(forgedFile, 'orchestrator');
  for (let i = 0; i < 3; i++) forger.record({ ...decision(i), reason: 'forged' });
  await forger.flush();
  const forged = fileLines(forgedFile).map((l) => l.replace(/"chain":"[0-9a-f]{16}"/, `"chain":"${id}"`));
  const relinked: string[] = [];
  for (const l of forged) {
    const rec = JSON.parse(l);
    rec.prev = relinked.length === 0 ? rec.prev : lineHash(Buffer.from(relinked[relinked.length - 1]!));
    relinked.push(JSON.stringify(rec));
  }
  let r = await verifyAuditChain(joinLines([...relinked, ...real]), { mixed: true });
  t.match(r.errors, [{ line: relinked.length + 1, seq: 0, reason: 'chain_restart', chain: id }], 'the real genesis is a second start of that chain');
  // Without a genesis of its own (records continuing the chain's seq), the forged start is caught instead.
  r = await verifyAuditChain(joinLines([...relinked.slice(1), ...real]), { mixed: true });
  t.match(r.errors[0], { line: 1, reason: 'chain_start_missing', chain: id });
  // A fake chain under a new ID is one more chain: listed, and excluded by --chain with the real head anchored.
  const own = fileLines(forgedFile);
  r = await verifyAuditChain(joinLines([...own, ...real]), { mixed: true });
  t.equal(r.segments, 2, 'listed as a chain of its own');
  const head = { seq: 10, head: lineHash(Buffer.from(real[10]!)) };
  r = await verifyAuditChain(joinLines([...own, ...real]), { mixed: true, chain: id, expect: head });
  t.ok(r.ok);
  t.equal(r.skipped, own.length, 'the other chain is skipped');
});

t.test('CLI: --from, --chain and per-chain listing', async (t) => {
  const dir = tempDir(t);
  const lines = await chain(t, 6, 'a');
  const other = await chain(t, 2, 'b');
  const file = path.join(dir, 'mixed.log');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(file, joinLines([...other, ...lines.slice(3)]));
  const run = async (argv: string[]) => {
    const out = new PassThrough();
    let o = '';
    out.on('data', (d: Buffer) => (o += d.toString()));
    const code = await auditCommand(argv, out, new PassThrough());
    return { code, out: o };
  };
  let r = await run(['verify', file, '--mixed']);
  t.equal(r.code, 1);
  t.match(r.out, /chain_start_missing/);
  t.match(r.out, /sidecar a chain [0-9a-f]{16}: 4 records \(seq 3\.\.6\)/);
  const id = JSON.parse(lines[0]!).chain as string;
  r = await run(['verify', file, '--mixed', '--chain', id, '--from', `2:${lineHash(Buffer.from(lines[2]!))}`]);
  t.equal(r.code, 0, r.out);
  t.equal((await run(['verify', file, '--mixed', '--from', `2:${lineHash(Buffer.from(lines[2]!))}`])).code, 2, '--from in mixed mode needs --chain');
  t.equal((await run(['verify', file, '--from', 'x'])).code, 2);
});
