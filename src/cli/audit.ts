/**
 * `attest-sidecar audit verify FILE`: checks an audit log's hash chain. Exit 0 intact, 1 broken,
 * 2 usage error or unreadable file. Takes its streams as arguments so tests call it directly.
 */
import { open } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { errorMessage } from '../errors.js';
import { isChainHash, isChainId } from '../audit/chain.js';
import { AuditChainVerifier, type AuditVerifyOptions, type AuditVerifyReport } from '../audit/verify.js';

export const AUDIT_USAGE = `Usage:
  attest-sidecar audit verify FILE [--expect-seq N] [--expect-head SHA256] [--from SEQ:SHA256]
                                   [--mixed] [--chain ID] [--json]

Checks the audit log's hash chain: every line is a JSON audit record, a chain starts with its
genesis record (seq 0), seq counts up by one and each record's prev is the SHA-256 of the
previous record's line. Editing, removing, inserting or reordering records anywhere before the
last one breaks the chain; so does removing records from the start.

Removing records from the END cannot be detected by the chain alone (what remains is a valid,
shorter chain). Note the head this command prints (chain, seq and sha256), or the sidecar's,
somewhere the host cannot rewrite, and check against it later:
  --expect-seq N        record N must still be present
  --expect-head SHA256  a record must hash to SHA256 (with --expect-seq: record N must)
  --from SEQ:SHA256     FILE starts after its genesis (rotated): it must start with the record
                        SEQ that hashes to SHA256 (noted earlier), or with the record after it
  --mixed               FILE mixes audit lines with other logs (a container's stdout, several
                        sidecars): skip lines that are not audit records; verify each chain
                        (one per sidecar start, by its "chain" ID) on its own
  --chain ID            verify only the chain with this ID (others are skipped)
  --json                print the full report as JSON

Exit status: 0 intact, 1 broken (each problem is printed with its line number), 2 usage error or
unreadable file.
`;

export async function auditCommand(argv: string[], out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'help' || sub === '--help' || sub === '-h') {
    out.write(AUDIT_USAGE);
    return 0;
  }
  if (sub !== 'verify') {
    err.write(`attest-sidecar audit: ${sub ? `unknown subcommand "${sub}"` : 'a subcommand is required'}\n${AUDIT_USAGE}`);
    return 2;
  }
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      allowPositionals: true,
      strict: true,
      options: {
        'expect-seq': { type: 'string' },
        'expect-head': { type: 'string' },
        from: { type: 'string' },
        chain: { type: 'string' },
        mixed: { type: 'boolean' },
        json: { type: 'boolean' },
      },
    });
  } catch (e) {
    return usage(err, errorMessage(e));
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 1) return usage(err, positionals.length === 0 ? 'FILE is required' : 'exactly one FILE');
  const opts: AuditVerifyOptions = { mixed: values.mixed ?? false };
  const expect: { seq?: number; head?: string } = {};
  if (values['expect-seq'] !== undefined) {
    const seq = /^[1-9][0-9]{0,15}$/.test(values['expect-seq']) ? Number(values['expect-seq']) : NaN;
    if (!Number.isSafeInteger(seq)) return usage(err, `--expect-seq must be a positive integer, got "${values['expect-seq']}"`);
    expect.seq = seq;
  }
  if (values['expect-head'] !== undefined) {
    const head = values['expect-head'].toLowerCase();
    if (!isChainHash(head)) return usage(err, '--expect-head must be a SHA-256 in hex (64 digits)');
    expect.head = head;
  }
  if (expect.seq !== undefined || expect.head !== undefined) opts.expect = expect;
  if (values.from !== undefined) {
    const m = /^(0|[1-9][0-9]{0,15}):([0-9a-fA-F]{64})$/.exec(values.from);
    if (!m || !Number.isSafeInteger(Number(m[1]))) return usage(err, `--from must be SEQ:SHA256 (a record's seq and its 64-digit hash), got "${values.from}"`);
    opts.from = { seq: Number(m[1]), hash: m[2]!.toLowerCase() };
  }
  if (values.chain !== undefined) {
    if (!isChainId(values.chain)) return usage(err, `--chain must be a chain ID (16 hex digits), got "${values.chain}"`);
    opts.chain = values.chain;
  }
  if (opts.mixed && !opts.chain && (opts.from || opts.expect)) {
    return usage(err, '--mixed with --from/--expect-*: name the chain they belong to with --chain ID');
  }

  const file = positionals[0]!;
  let report: AuditVerifyReport;
  try {
    report = await verifyFile(file, opts);
  } catch (e) {
    err.write(`attest-sidecar audit verify: cannot read ${file}: ${errorMessage(e)}\n`);
    return 2;
  }
  out.write(values.json ? `${JSON.stringify(report)}\n` : formatReport(file, report));
  return report.ok ? 0 : 1;
}

async function verifyFile(file: string, opts: AuditVerifyOptions): Promise<AuditVerifyReport> {
  // Opened first so a missing or unreadable file is a usage-level failure (exit 2), not "broken".
  const fh = await open(file, 'r');
  try {
    if (!(await fh.stat()).isFile()) throw new Error('not a regular file');
    const verifier = new AuditChainVerifier(opts);
    for await (const chunk of fh.createReadStream({ highWaterMark: 1024 * 1024, autoClose: false })) verifier.update(chunk as Buffer);
    return verifier.finish();
  } finally {
    await fh.close();
  }
}

export function formatReport(file: string, report: AuditVerifyReport): string {
  const lines: string[] = [];
  const one = report.chains.length === 1;
  const range = report.records > 0 && one ? ` (seq ${report.firstSeq}..${report.lastSeq})` : report.chains.length > 1 ? ` in ${report.chains.length} chains` : '';
  const head = report.headHash && one ? `, head sha256 ${report.headHash}` : '';
  if (report.ok) {
    lines.push(report.records > 0 ? `audit chain intact: ${report.records} records${range}${head}` : `audit chain intact: no chained records in ${file}`);
  } else {
    lines.push(`audit chain BROKEN: ${report.errorCount} problem(s) in ${file}; ${report.records} records${range}${head}`);
    for (const e of report.errors) {
      const tags = [e.chain !== undefined ? `chain ${e.chain}` : undefined, e.seq !== undefined ? `seq ${e.seq}` : undefined].filter(Boolean);
      const seq = tags.length > 0 ? ` (${tags.join(', ')})` : '';
      lines.push(`  line ${e.line}${seq}: ${e.reason}: ${e.detail}`);
    }
    if (report.errorCount > report.errors.length) lines.push(`  ... and ${report.errorCount - report.errors.length} more`);
  }
  if (report.chains.length > 1) {
    for (const c of report.chains) {
      const who = [c.sidecar !== undefined ? `sidecar ${c.sidecar}` : undefined, c.id !== undefined ? `chain ${c.id}` : undefined].filter(Boolean).join(' ');
      lines.push(`  ${who || 'chain'}: ${c.records} records (seq ${c.firstSeq}..${c.lastSeq}) from line ${c.line}, head sha256 ${c.headHash}`);
    }
    lines.push('note: several chains (sidecars, or restarts, on a shared stream); each was verified on its own');
  }
  if (report.unchained > 0) lines.push(`note: ${report.unchained} unchained audit line(s) before the chain began (older format)`);
  if (report.skipped > 0) lines.push(`note: skipped ${report.skipped} non-audit line(s)`);
  if (report.records > 0) {
    lines.push('note: records removed from the end leave a valid chain, and a whole chain can be forged; compare each head with an anchored copy (--expect-seq/--expect-head)');
  }
  return `${lines.join('\n')}\n`;
}

function usage(err: NodeJS.WritableStream, message: string): number {
  err.write(`attest-sidecar audit verify: ${message}\n${AUDIT_USAGE}`);
  return 2;
}
