/**
 * SIGHUP on an `attest-sidecar run` process, with real signals: the process stays up, a policy
 * edit no file watch can see applies, a broken policy keeps the last good one, and each
 * reloadable part is audited once per signal.
 *
 * The policy path is a symlink into another folder, and the edit keeps the file's size, inode
 * and mtime: neither the directory watch nor the fallback poll notices it, only SIGHUP does.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { SidecarProcesses, agentId } from '../helpers/sidecar-process.js';

/** A round mtime: restoring it is exact, whatever the file system's timestamp precision. */
const FIXED_MTIME = new Date('2024-01-01T00:00:00Z');

const policyText = (action: string) => `agents:\n  - name: a1\n    spiffe_id: ${agentId('a1')}\n    allowed_actions: [${action}]\n`;

/** GET /things/1 through the agent sidecar: the status code. */
function getThing(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: 'http://things/things/1', agent: false, headers: { host: 'things' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end();
  });
}

const sharedDir = mkdtempSync(path.join(tmpdir(), 'attest-sighup-'));
t.teardown(() => rmSync(sharedDir, { recursive: true, force: true }));
// The watched path is a symlink into another folder: an in-place edit there is seen by SIGHUP only.
const sharedReal = path.join(sharedDir, 'real', 'revoked.yaml');
mkdirSync(path.dirname(sharedReal));
writeFileSync(sharedReal, 'revoked: []\n');
const sharedList = path.join(sharedDir, 'revoked.yaml');
symlinkSync(sharedReal, sharedList);
const procs = await SidecarProcesses.start({ agents: ['a1'], serviceTop: `revocations: { shared_files: ["${sharedList}"] }` });
t.teardown(() => procs.close());
const service = procs.procs[0]!;
const realDir = path.join(procs.dir, 'real');
const realPolicy = path.join(realDir, 'policy.yaml');
const reloads = () => procs.auditRecords().filter((r) => r.type === 'reload');

/** Rewrites the policy in place (same inode), with the fixed mtime. */
function editInPlace(text: string): void {
  writeFileSync(realPolicy, text);
  utimesSync(realPolicy, FIXED_MTIME, FIXED_MTIME);
}

t.test('SIGHUP applies a policy edit no watcher saw; the process stays up', async (t) => {
  t.equal(await getThing(procs.ports.outbound), 200, 'things.read allowed at start');
  // Move the policy behind a symlink in another folder (same content: nothing changes).
  mkdirSync(realDir);
  editInPlace(policyText('things.read'));
  symlinkSync(realPolicy, path.join(procs.dir, 'policy.next'));
  renameSync(path.join(procs.dir, 'policy.next'), path.join(procs.dir, 'policy.yaml'));
  const stamp = statSync(realPolicy);
  // The swap itself is seen (same content: no change); let that re-read finish before the edit.
  await new Promise((r) => setTimeout(r, 2_000));

  editInPlace(policyText('thingz.read')); // same length: same size, inode and mtime
  const after = statSync(realPolicy);
  t.same([after.ino, after.size, after.mtimeMs], [stamp.ino, stamp.size, stamp.mtimeMs], 'the edit is invisible to a stat');
  // Longer than the watcher's fallback poll (5 s): no watch applied the edit.
  await new Promise((r) => setTimeout(r, 6_000));
  t.equal(await getThing(procs.ports.outbound), 200, 'without SIGHUP the old policy still allows');

  service.kill('SIGHUP');
  await procs.until(async () => ((await getThing(procs.ports.outbound)) === 403 ? true : undefined), 'the edited policy to deny things.read after SIGHUP');
  t.equal(procs.alive(), true, 'still running after SIGHUP');
  const records = await procs.until(async () => (reloads().length >= 3 ? reloads() : undefined), 'one reload record per part');
  t.match(records.find((r) => r.target === 'policy'), { decision: 'allow', reason: 'reloaded', detail: /reloaded, version / });
  t.match(records.find((r) => r.target === 'revocations'), { decision: 'allow', reason: 'reload_unchanged' });
  t.match(records.find((r) => r.target === 'identity_files'), { decision: 'allow', reason: 'reload_unchanged' });
  t.equal(records.filter((r) => r.target === 'policy').length, 1, 'one record per part');
});

t.test('a broken policy and SIGHUP: the last good policy stays, the process runs', async (t) => {
  const before = reloads().length;
  editInPlace('agents:\n  - name: a1\n    spiffe_id: [unclosed\n');
  service.kill('SIGHUP');
  const rejected = await procs.until(async () => reloads().slice(before).find((r) => r.target === 'policy' && r.decision === 'error'), 'the rejected reload to be audited');
  t.equal(rejected.reason, 'policy_invalid');
  t.match(rejected.detail, /keeping version/);
  t.equal(await getThing(procs.ports.outbound), 403, 'the last good policy (things.read not allowed) stays in force');
  t.equal(procs.alive(), true, 'still running');
  await procs.until(async () => (/SIGHUP: policy rejected/.test(procs.stderr()) ? true : undefined), 'the rejection in the log');

  editInPlace(policyText('things.read'));
  service.kill('SIGHUP');
  await procs.until(async () => ((await getThing(procs.ports.outbound)) === 200 ? true : undefined), 'the fixed policy to apply');
  t.equal(procs.alive(), true);
});

t.test('SIGHUP re-reads a shared revocation list no watcher saw', async (t) => {
  t.equal(await getThing(procs.ports.outbound), 200);
  const before = reloads().length;
  writeFileSync(sharedReal, `revoked:\n  - { spiffe_id: "${agentId('a1')}", reason: sighup test }\n`);
  await new Promise((r) => setTimeout(r, 2_000));
  t.equal(await getThing(procs.ports.outbound), 200, 'not revoked without SIGHUP (the list has no fallback poll)');
  service.kill('SIGHUP');
  await procs.until(async () => ((await getThing(procs.ports.outbound)) === 403 ? true : undefined), 'the revocation to apply after SIGHUP');
  // Audit writes are asynchronous: records of the previous test's SIGHUP may land after `before`.
  const record = await procs.until(async () => reloads().slice(before).find((r) => r.target === 'revocations' && r.reason === 'reloaded'), 'the revocations reload record');
  t.match(record, { decision: 'allow', detail: /changed, 1 revoked/ });
  t.equal(procs.alive(), true);
});
