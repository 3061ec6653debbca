/**
 * SIGHUP on an `attest-sidecar run` process, with real signals: the process stays up, a policy
 * edit no file watch can see applies, a broken policy keeps the last good one, and each
 * reloadable part is audited once per signal.
 *
 * The policy path is a symlink into another folder, and the edit keeps the file's size, inode
 * and mtime: neither the directory watch nor the fallback poll notices it, only SIGHUP does.
 */
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { SidecarProcesses, agentId } from '../helpers/sidecar-process.js';
import { capturingLogger, quietLogger } from '../helpers/logger.js';
import { reloadAll } from '../../src/sidecar-lifecycle.js';
import { ReferenceValueStore } from '../../src/attestation/reference-values.js';
import { FilesX509Source } from '../../src/spiffe/files-source.js';
import { RevocationStore } from '../../src/revocation/store.js';
import { MemoryAuditSink } from '../../src/audit/record.js';
import { DevCa } from '../../src/dev/ca.js';

/** A round mtime: restoring it is exact, whatever the file system's timestamp precision. */
const FIXED_MTIME = new Date('2024-01-01T00:00:00Z');

const policyText = (action: string) => `agents:\n  - name: a1\n    spiffe_id: ${agentId('a1')}\n    allowed_actions: [${action}]\n`;

/** GET /things/1 through the agent sidecar (with a caller token when given): the status code. */
function getThing(port: number, token?: string): Promise<number> {
  const auth = token ? { 'proxy-authorization': `Basic ${Buffer.from(`agent:${token}`).toString('base64')}` } : {};
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: 'http://things/things/1', agent: false, headers: { host: 'things', ...auth } }, (res) => {
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

  const handshakes = () => procs.metric(procs.ports.adminIn, /^attest_sidecar_inbound_connections_total/);
  const before = await handshakes();
  t.ok(before >= 1, `inbound handshakes counted (${before})`);
  service.kill('SIGHUP');
  await procs.until(async () => ((await getThing(procs.ports.outbound)) === 403 ? true : undefined), 'the edited policy to deny things.read after SIGHUP');
  t.equal(procs.alive(), true, 'still running after SIGHUP');
  t.equal(await handshakes(), before, 'no connection dropped: the agent sidecar still uses its pooled connection');
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

t.test('SIGHUP re-reads the caller token no watcher saw', async (t) => {
  const tokenDir = mkdtempSync(path.join(tmpdir(), 'attest-sighup-token-'));
  t.teardown(() => rmSync(tokenDir, { recursive: true, force: true }));
  const realToken = path.join(tokenDir, 'real', 'token');
  mkdirSync(path.dirname(realToken));
  const oldToken = 'old-token-0123456789abcdef';
  const newToken = 'new-token-0123456789abcdef';
  writeFileSync(realToken, `${oldToken}\n`);
  const tokenLink = path.join(tokenDir, 'token');
  symlinkSync(realToken, tokenLink);
  const pair = await SidecarProcesses.start({ agents: ['a1'], outboundExtra: `  caller_token_file: "${tokenLink}"` });
  t.teardown(() => pair.close());
  const agent = pair.procs[1]!;
  const agentReloads = () => {
    try {
      return readFileSync(path.join(pair.dir, 'agent-audit.log'), 'utf8').split('\n').filter((l) => l.includes('"type":"reload"')).map((l) => JSON.parse(l) as Record<string, unknown>);
    } catch {
      return [];
    }
  };
  t.equal(await getThing(pair.ports.outbound, oldToken), 200, 'the old token is accepted');
  t.equal(await getThing(pair.ports.outbound), 407, 'no token: refused');

  writeFileSync(realToken, `${newToken}\n`);
  await new Promise((r) => setTimeout(r, 2_000));
  t.equal(await getThing(pair.ports.outbound, oldToken), 200, 'without SIGHUP the old token still holds');
  agent.kill('SIGHUP');
  await pair.until(async () => ((await getThing(pair.ports.outbound, oldToken)) === 407 ? true : undefined), 'the old token to be refused after SIGHUP');
  t.equal(await getThing(pair.ports.outbound, newToken), 200, 'the new token is accepted');
  const record = await pair.until(async () => agentReloads().find((r) => r.target === 'credentials'), 'the credentials reload record');
  t.match(record, { decision: 'allow', reason: 'reloaded', detail: /re-read 1 secret file set/ });
  t.notMatch(JSON.stringify(agentReloads()), /token-0123/, 'no secret in the audit trail');

  writeFileSync(realToken, 'bad token with spaces\n');
  agent.kill('SIGHUP');
  const bad = await pair.until(async () => agentReloads().find((r) => r.target === 'credentials' && r.decision === 'error'), 'the unusable token to be audited');
  t.match(bad, { reason: 'caller_token_unavailable', detail: /caller token/ });
  t.equal(await getThing(pair.ports.outbound, newToken), 503, 'an unusable token file refuses every request (fail closed)');
  t.equal(pair.alive(), true);
});

t.test('what SIGHUP runs, in process: reference values and file identities no watcher saw', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'attest-sighup-parts-'));
  const real = mkdtempSync(path.join(tmpdir(), 'attest-sighup-parts-real-'));
  t.teardown(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(real, { recursive: true, force: true });
  });
  const linked = (name: string, text: string) => {
    writeFileSync(path.join(real, name), text);
    symlinkSync(path.join(real, name), path.join(dir, name));
    return path.join(dir, name);
  };
  const rv = (measurement: string) => `reference_values:\n  name: prod\n  expires: 2099-01-01T00:00:00Z\n  measurements: ["${measurement}"]\n`;
  const referenceValues = await ReferenceValueStore.open({ files: { prod: linked('prod.yaml', rv('a1'.repeat(48))) }, keys: [], requireSignature: false });
  t.teardown(() => referenceValues.close());
  const ca = await DevCa.create({ trustDomain: 'parts.test' });
  const first = await ca.issueX509Svid('spiffe://parts.test/me', { ttlSeconds: 3600 });
  const files = { cert: linked('svid.pem', first.certChainPem), key: linked('svid-key.pem', first.keyPem), bundle: linked('bundle.pem', ca.bundle().toPem()) };
  // No fallback poll within the test: only an explicit reload can see the edits below.
  const source = new FilesX509Source({ ...files, pollIntervalMs: 3_600_000 });
  t.teardown(() => source.close());
  await source.requireIdentity(30_000);
  const revocations = await RevocationStore.open({ logger: quietLogger });
  t.teardown(() => revocations.close());
  const logger = capturingLogger();
  const audit = new MemoryAuditSink();
  const targets = { policy: undefined, outbound: undefined, revocations, referenceValues, source };

  const version = referenceValues.version();
  const second = await ca.issueX509Svid('spiffe://parts.test/me', { ttlSeconds: 3600 });
  writeFileSync(path.join(real, 'prod.yaml'), rv('b2'.repeat(48)));
  await new Promise((r) => setTimeout(r, 1_000));
  t.equal(referenceValues.version(), version, 'no watcher saw the reference values edit');
  writeFileSync(path.join(real, 'svid.pem'), second.certChainPem);
  writeFileSync(path.join(real, 'svid-key.pem'), second.keyPem);

  const outcomes = await reloadAll(targets, logger, audit);
  t.same(outcomes.map((o) => o.part), ['reference_values', 'identity_files'], 'parts without files (policy, credentials, shared lists) are skipped');
  t.match(outcomes[0], { reason: 'reloaded', decision: 'allow' });
  // The files source also re-reads on its own (a watch event may have come first): either way allowed.
  t.match(outcomes[1], { reason: /^(reloaded|reload_unchanged)$/, decision: 'allow' });
  t.not(referenceValues.version(), version);
  t.equal(source.current()!.svid.certificates[0]!.serialNumber, second.svid.certificates[0]!.serialNumber, 'the new SVID is in force');
  t.same(logger.lines.filter((l) => /^SIGHUP: /.test(l.msg ?? '')).map((l) => l.obj.part), ['reference_values', 'identity_files'], 'one log line per part');
  t.same(audit.records.map((r) => [r.type, r.target, r.decision]), [['reload', 'reference_values', 'allow'], ['reload', 'identity_files', 'allow']]);

  // Broken files: rejected, the last good state stays.
  writeFileSync(path.join(real, 'prod.yaml'), 'reference_values: [unclosed\n');
  writeFileSync(path.join(real, 'svid.pem'), 'not a certificate\n');
  const kept = referenceValues.version();
  const broken = await reloadAll(targets, logger, audit);
  t.match(broken, [
    { part: 'reference_values', decision: 'error', reason: 'reference_values_invalid', detail: /keeping the last good values/ },
    { part: 'identity_files', decision: 'error', reason: 'identity_files_invalid', detail: /keeping the current identity/ },
  ]);
  t.equal(referenceValues.version(), kept, 'the last good reference values stay');
  t.equal(source.current()!.svid.certificates[0]!.serialNumber, second.svid.certificates[0]!.serialNumber, 'the current SVID stays');
  t.ok(logger.lines.some((l) => l.level === 'error' && /^SIGHUP: identity_files rejected/.test(l.msg ?? '')));

  const again = await reloadAll(targets, logger, audit);
  t.match(again, [{ part: 'reference_values', reason: 'reload_unchanged' }, { part: 'identity_files', decision: 'error', reason: 'identity_files_invalid' }], 'the same broken files again: reference values report no change, the identity still reports its error');
  t.equal(referenceValues.version(), kept);
});
