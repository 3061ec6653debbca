/**
 * `inspect-evidence` and `verify-evidence`: offline tools for operators deriving reference
 * values from a known-good build, or checking a report or quote by hand.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { appraise, type NormalizedClaims } from '../attestation/appraise.js';
import { decodeEvidence } from '../attestation/envelope.js';
import { describeSnpReport, loadSnpAnchors, verifySnpReport } from '../attestation/sev-snp/index.js';
import { describeSimReport } from '../attestation/sim/report.js';
import { describeTpmQuote, verifyTpmQuote } from '../attestation/tpm/verify.js';
import { resolveAk } from '../attestation/tpm/ak.js';
import { decodePcrs } from '../attestation/tpm/evidence.js';
import { describeAzSnpVtpm } from '../attestation/az-snp-vtpm/verify.js';
import { AttestationError } from '../attestation/types.js';
import { tcbClaims } from '../attestation/verifier.js';
import { loadPolicyFile } from '../policy/compile.js';
import { errorMessage } from '../errors.js';

type Out = { exitCode: number; stdout: string; stderr: string };

/** Raw bytes of a report file: binary, or hex text (whitespace ignored). */
export function readEvidenceBytes(file: string): Buffer {
  const raw = readFileSync(file);
  const text = raw.toString('latin1').replace(/\s+/g, '');
  if (text.length > 0 && text.length % 2 === 0 && /^[0-9a-fA-F]+$/.test(text)) return Buffer.from(text, 'hex');
  return raw;
}

/** Guesses what a blob is from its size and magic. */
export function sniffEvidenceType(bytes: Buffer): 'sev-snp' | 'sim' | 'tpm' | 'az-snp-vtpm' | 'envelope' | undefined {
  if (bytes.length === 1184) return 'sev-snp';
  if (bytes.length >= 4 && bytes.subarray(0, 4).toString('latin1') === 'HCLA') return 'az-snp-vtpm';
  if (bytes.length >= 4 && bytes.readUInt32BE(0) === 0x4153494d) return 'sim';
  if (bytes.length >= 4 && bytes.readUInt32BE(0) === 0xff544347) return 'tpm';
  if (/^[A-Za-z0-9_-]+$/.test(bytes.toString('latin1'))) return 'envelope';
  return undefined;
}

export function inspectEvidenceCommand(args: string[]): Out {
  const { values, positionals } = parseArgs({ args, options: { type: { type: 'string' } }, allowPositionals: true, strict: true });
  const file = positionals[0];
  if (!file) return { exitCode: 2, stdout: '', stderr: 'attest-sidecar inspect-evidence: FILE is required\n' };
  try {
    const bytes = readEvidenceBytes(file);
    const type = values.type ?? sniffEvidenceType(bytes);
    let claims: unknown;
    switch (type) {
      case 'sev-snp':
        claims = describeSnpReport(bytes);
        break;
      case 'sim':
        claims = { ...describeSimReport(bytes), verified: false };
        break;
      case 'tpm':
        claims = { ...describeTpmQuote(bytes), verified: false };
        break;
      case 'az-snp-vtpm':
        claims = describeAzSnpVtpm(bytes);
        break;
      case 'envelope': {
        const ev = decodeEvidence(bytes.toString('latin1'));
        claims = {
          envelope: { type: ev.type, parts: Object.fromEntries(Object.entries(ev.parts).map(([k, v]) => [k, `${v.length} bytes`])) },
          ...(ev.type === 'sev-snp' ? { report: describeSnpReport(ev.parts.report!) } : {}),
          ...(ev.type === 'sim' ? { report: describeSimReport(ev.parts.report!) } : {}),
        };
        break;
      }
      default:
        return { exitCode: 1, stdout: '', stderr: `attest-sidecar inspect-evidence: cannot tell what ${file} is (${bytes.length} bytes); pass --type\n` };
    }
    return { exitCode: 0, stdout: JSON.stringify(claims, null, 2) + '\n', stderr: '' };
  } catch (err) {
    return { exitCode: 1, stdout: '', stderr: `attest-sidecar inspect-evidence: ${file}: ${errorMessage(err)}\n` };
  }
}

/** PEM texts from a file or every *.pem / *.crt / *.cer file of a directory. */
function readPemSources(p: string): string[] {
  if (statSync(p).isDirectory()) {
    return readdirSync(p)
      .filter((f) => /\.(pem|crt|cer)$/i.test(f))
      .sort()
      .map((f) => readFileSync(path.join(p, f), 'utf8'));
  }
  return [readFileSync(p, 'utf8')];
}

export function verifyEvidenceCommand(args: string[]): Out {
  const { values, positionals } = parseArgs({
    args,
    options: {
      type: { type: 'string' },
      cert: { type: 'string' },
      anchors: { type: 'string', multiple: true },
      at: { type: 'string' },
      policy: { type: 'string' },
      agent: { type: 'string' },
      signature: { type: 'string' },
      pcrs: { type: 'string' },
      ak: { type: 'string' },
      nonce: { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  const file = positionals[0];
  const result = (verified: boolean, reason: string, claims: unknown): Out => ({
    exitCode: verified ? 0 : 1,
    stdout: JSON.stringify({ verified, reason, claims }, null, 2) + '\n',
    stderr: '',
  });
  if (!file) return { exitCode: 2, stdout: '', stderr: 'attest-sidecar verify-evidence: FILE is required\n' };
  if (values.policy && !values.agent) return { exitCode: 2, stdout: '', stderr: 'attest-sidecar verify-evidence: --policy needs --agent NAME\n' };
  const now = values.at ? new Date(values.at) : new Date();
  if (Number.isNaN(now.getTime())) return { exitCode: 2, stdout: '', stderr: `attest-sidecar verify-evidence: --at ${values.at} is not an ISO time\n` };
  let claims: Record<string, unknown> | undefined;
  try {
    const bytes = readEvidenceBytes(file);
    const type = values.type ?? sniffEvidenceType(bytes);
    let normalized: NormalizedClaims;
    if (type === 'sev-snp') {
      const anchorFiles = values.anchors ?? [];
      if (anchorFiles.length === 0) return result(false, 'collateral_missing: --anchors DIR_OR_PEM (AMD ARK/ASK/ASVK) is required', describeSnpReport(bytes));
      const anchors = loadSnpAnchors(anchorFiles.flatMap(readPemSources));
      const vcek = values.cert ? readFileSync(values.cert) : undefined;
      const c = verifySnpReport(bytes, { anchors, ...(vcek ? { vcek } : {}) }, now);
      claims = { ...c };
      const t = c.reported_tcb;
      normalized = {
        evidence_type: 'sev-snp',
        tee_type: 'sev-snp',
        measurement: c.measurement,
        guest_svn: c.guest_svn,
        debug: c.policy.debug,
        tcb: tcbClaims(t),
        chip_id: c.chip_id,
      };
    } else if (type === 'tpm') {
      if (!values.signature || !values.pcrs || !values.ak) {
        return { exitCode: 2, stdout: '', stderr: 'attest-sidecar verify-evidence --type tpm: --signature FILE --pcrs FILE --ak FILE are required\n' };
      }
      const pcrsDoc = JSON.parse(readFileSync(values.pcrs, 'utf8')) as Record<string, unknown>;
      const pcrs = 'alg' in pcrsDoc ? decodePcrs(Buffer.from(JSON.stringify(pcrsDoc))) : guessPcrs(pcrsDoc as Record<string, string>);
      const akBytes = readFileSync(values.ak);
      const ak = akBytes.toString('latin1').includes('-----BEGIN') ? akBytes.toString('utf8') : akBytes;
      // The operator names the AK: a TPMT_PUBLIC is trusted by its Name, a PEM key or certificate by its key.
      const given = resolveAk(ak);
      const akTrust = given.tpmPublic ? { names: [given.tpmPublic.name] } : { keys: [given.key] };
      const c = verifyTpmQuote(
        { attest: bytes, signature: readEvidenceBytes(values.signature), pcrs, ak },
        { akTrust, ...(values.nonce !== undefined ? { expectedExtraData: Buffer.from(values.nonce, 'hex') } : {}) },
        now,
      );
      const { clock_state: _s, ...json } = c;
      claims = { ...json, ak_trust: 'the AK given with --ak (pin its ak_name in tpm_ak_names)' };
      normalized = { evidence_type: 'tpm', tee_type: 'tpm', pcrs: c.pcrs, tpm_ak_spki_sha256: c.ak_spki_sha256 };
    } else {
      return { exitCode: 2, stdout: '', stderr: `attest-sidecar verify-evidence: --type ${type ?? '(unknown)'} is not supported offline (sev-snp, tpm)\n` };
    }
    if (values.policy) {
      const policy = loadPolicyFile(values.policy);
      const agent = policy.agents.find((a) => a.name === values.agent);
      if (!agent) return result(false, `policy_mismatch: no agent named '${values.agent}' in ${values.policy}`, claims);
      if (!agent.attestation) return result(false, `policy_mismatch: agent '${values.agent}' has no attestation_requirements`, claims);
      appraise(normalized, agent.attestation, now);
    }
    return result(true, 'ok', claims);
  } catch (err) {
    if (err instanceof AttestationError) return result(false, `${err.reason}: ${err.message}`, claims ?? safeDescribe(file));
    return { exitCode: 1, stdout: JSON.stringify({ verified: false, reason: errorMessage(err), claims: claims ?? null }, null, 2) + '\n', stderr: '' };
  }
}

/** `{"0": "hex", ...}` (as the conformance files have it): the bank follows from the digest length. */
function guessPcrs(values: Record<string, string>) {
  const len = Object.values(values)[0]?.length ?? 64;
  const alg = len === 40 ? 'sha1' : len === 96 ? 'sha384' : 'sha256';
  return decodePcrs(Buffer.from(JSON.stringify({ alg, values })));
}

function safeDescribe(file: string): unknown {
  try {
    return existsSync(file) ? describeSnpReport(readEvidenceBytes(file)) : null;
  } catch {
    return null;
  }
}
