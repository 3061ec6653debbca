/**
 * `attest-sidecar audit verify FILE`: checks an audit log's hash chain. Exit 0 intact, 1 broken,
 * 2 usage error or unreadable file. Takes its streams as arguments so tests call it directly.
 */
import { open } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { errorMessage } from '../errors.js';
import { isChainHash } from '../audit/chain.js';
import { AuditChainVerifier, type AuditVerifyOptions, type AuditVerifyReport } from '../audit/verify.js';

export const AUDIT_USAGE = `Usage:
  attest-sidecar audit verify FILE [--expect-seq N] [--expect-head SHA256] [--mixed] [--json]

Checks the audit log's hash chain: every line is a JSON audit record, seq counts up by one and
each record's prev is the SHA-256 of the previous record's line. Editing, removing, inserting or
reordering records before the last one breaks the chain.

Removing records from the END cannot be detected by the chain alone (what remains is a valid,
shorter chain). Note the head this command prints (seq and sha256), or the sidecar's, somewhere
the host cannot rewrite, and check against it later:
  --expect-seq N        record N must still be present
  --expect-head SHA256  a record must hash to SHA256 (with --expect-seq: record N must)
  --mixed               FILE mixes audit lines with other logs (a container's stdout):
                        skip lines that are not audit records; a sidecar restart starts a new chain
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

export function formatReport(file: string, r: AuditVerifyReport): string {
  const lines: string[] = [];
  const range = r.records > 0 ? ` (seq ${r.firstSeq}..${r.lastSeq})` : '';
  const head = r.headHash ? `, head sha256 ${r.headHash}` : '';
  if (r.ok) {
    lines.push(r.records > 0 ? `audit chain intact: ${r.records} records${range}${head}` : `audit chain intact: no chained records in ${file}`);
  } else {
    lines.push(`audit chain BROKEN: ${r.errorCount} problem(s) in ${file}; ${r.records} records${range}${head}`);
    for (const e of r.errors) {
      const seq = e.seq !== undefined ? ` (seq ${e.seq})` : '';
      lines.push(`  line ${e.line}${seq}: ${e.reason}: ${e.detail}`);
    }
    if (r.errorCount > r.errors.length) lines.push(`  ... and ${r.errorCount - r.errors.length} more`);
  }
  if (r.firstSeq !== undefined && r.firstSeq !== 1) {
    lines.push(`note: the chain starts at seq ${r.firstSeq}: earlier records are not in this file (rotated away or removed)`);
  }
  if (r.segments > 1) lines.push(`note: ${r.segments} chain segments (sidecar restarts on a shared stream)`);
  if (r.unchained > 0) lines.push(`note: ${r.unchained} unchained audit line(s) before the chain began (older format)`);
  if (r.skipped > 0) lines.push(`note: skipped ${r.skipped} non-audit line(s)`);
  if (r.records > 0) {
    lines.push('note: records removed from the end leave a valid chain; compare the head with an anchored copy (--expect-seq/--expect-head)');
  }
  return `${lines.join('\n')}\n`;
}

function usage(err: NodeJS.WritableStream, message: string): number {
  err.write(`attest-sidecar audit verify: ${message}\n${AUDIT_USAGE}`);
  return 2;
}
