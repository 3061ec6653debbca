/**
 * The audit file is opened for appending without O_DSYNC: the end-of-turn write(2) only
 * copies into the page cache (no disk wait on the event loop); fdatasync follows on the thread
 * pool. Linux only: reads the open flags from /proc/self/fdinfo. The kill -9 promise is
 * tested in kill.test.ts.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { constants, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { JsonLinesAuditSink } from '../../src/audit/sink.js';

function openFlags(file: string): number | undefined {
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (target !== file) continue;
    const m = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
    return m ? parseInt(m[1]!, 8) : undefined;
  }
  return undefined;
}

const linux = process.platform === 'linux';

t.test('a file sink appends without O_DSYNC; sync() makes records durable', { skip: linux ? false : 'reads /proc (Linux only)' }, async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'audit-dsync-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const durable = path.join(dir, 'durable.log');
  const sink = new JsonLinesAuditSink(durable, 'test');
  const flags = openFlags(durable);
  t.ok(flags !== undefined, 'the audit file is open');
  t.equal(flags! & constants.O_DSYNC, 0, 'no O_DSYNC: writes never wait for the disk');
  t.equal(flags! & constants.O_APPEND, constants.O_APPEND, 'O_APPEND');
  sink.record({ type: 'inbound_decision', decision: 'allow', reason: 'allowed' });
  await sink.sync();
  t.ok(statSync(durable).size > 0, 'a synced record is in the file');
  await sink.flush();

  const plain = path.join(dir, 'plain.log');
  const fast = new JsonLinesAuditSink(plain, 'test', { fsync: false });
  t.equal(openFlags(plain)! & constants.O_APPEND, constants.O_APPEND, 'O_APPEND with fsync off too');
  await fast.flush();
});

t.test('records pending when the process exits (exit() or an uncaught exception) are written', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'audit-exit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sinkUrl = JSON.stringify(new URL('../../src/audit/sink.js', import.meta.url).href);
  for (const [how, end, code] of [['exit', 'process.exit(3)', 3], ['throw', "throw new Error('boom')", 1]] as const) {
    const file = path.join(dir, `${how}.log`);
    // The records are made and the process ends in the same turn: no end-of-turn write runs.
    const script = `const { JsonLinesAuditSink } = await import(${sinkUrl});
      const sink = new JsonLinesAuditSink(${JSON.stringify(file)}, 'x');
      setTimeout(() => { for (let i = 0; i < 5; i++) sink.record({ type: 'admin_action', decision: 'allow', reason: 'r' + i }); ${end}; }, 10);`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000 });
    t.equal(r.status, code, `${how}: ${r.stderr.split('\n')[0]}`);
    const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
    t.same(lines.map((l) => JSON.parse(l).reason), ['chain_genesis', 'r0', 'r1', 'r2', 'r3', 'r4'], `${how}: all five records`);
  }
});
