/**
 * `inspect-evidence` and `verify-evidence`: offline tools for operators deriving reference
 * values from a known-good build, or checking a report or quote by hand.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';
import { appraise } from '../attestation/appraise.js';
import { decodeEvidence } from '../attestation/envelope.js';
import type { OfflineFiles } from '../attestation/kind.js';
import { allKinds, kindNamed, type AnyKind, type EvidenceType } from '../attestation/kinds.js';
import { AttestationError } from '../attestation/types.js';
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

/** Guesses what a blob is from its size and magic (each kind recognises its own). */
export function sniffEvidenceType(bytes: Buffer): EvidenceType | 'envelope' | undefined {
  const kind = allKinds().find((k) => k.sniff?.(bytes));
  if (kind) return kind.name as EvidenceType;
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
    if (type === 'envelope') {
      const evidence = decodeEvidence(bytes.toString('latin1'));
      claims = {
        envelope: { type: evidence.type, parts: Object.fromEntries(Object.entries(evidence.parts).map(([k, v]) => [k, `${v.length} bytes`])) },
        ...kindNamed(evidence.type)?.describeParts?.(evidence.parts),
      };
    } else {
      const describe = type === undefined ? undefined : kindNamed(type)?.describe;
      if (!describe) return { exitCode: 1, stdout: '', stderr: `attest-sidecar inspect-evidence: cannot tell what ${file} is (${bytes.length} bytes); pass --type\n` };
      claims = describe(bytes);
    }
    return { exitCode: 0, stdout: JSON.stringify(claims, null, 2) + '\n', stderr: '' };
  } catch (err) {
    return { exitCode: 1, stdout: '', stderr: `attest-sidecar inspect-evidence: ${file}: ${errorMessage(err)}\n` };
  }
}

/** PEM texts from a file or every *.pem / *.crt / *.cer file of a directory. */
function readPemSources(filePath: string): string[] {
  if (statSync(filePath).isDirectory()) {
    return readdirSync(filePath)
      .filter((f) => /\.(pem|crt|cer)$/i.test(f))
      .sort()
      .map((f) => readFileSync(path.join(filePath, f), 'utf8'));
  }
  return [readFileSync(filePath, 'utf8')];
}

const OFFLINE: readonly AnyKind[] = allKinds().filter((k) => k.offline);
const VERIFY_OPTIONS: NonNullable<ParseArgsConfig['options']> = Object.assign(
  { type: { type: 'string' }, at: { type: 'string' }, policy: { type: 'string' }, agent: { type: 'string' } },
  ...OFFLINE.map((k) => k.offline!.options),
);
const FILES: OfflineFiles = { read: (file) => readFileSync(file), evidence: readEvidenceBytes, pem: readPemSources };

export function verifyEvidenceCommand(args: string[]): Out {
  const { values, positionals } = parseArgs({ args, options: VERIFY_OPTIONS, allowPositionals: true, strict: true });
  const flag = (name: string) => (typeof values[name] === 'string' ? (values[name] as string) : undefined);
  const file = positionals[0];
  const result = (verified: boolean, reason: string, claims: unknown): Out => ({
    exitCode: verified ? 0 : 1,
    stdout: JSON.stringify({ verified, reason, claims }, null, 2) + '\n',
    stderr: '',
  });
  if (!file) return { exitCode: 2, stdout: '', stderr: 'attest-sidecar verify-evidence: FILE is required\n' };
  const policyFile = flag('policy');
  const agentName = flag('agent');
  if (policyFile && !agentName) return { exitCode: 2, stdout: '', stderr: 'attest-sidecar verify-evidence: --policy needs --agent NAME\n' };
  const at = flag('at');
  const now = at ? new Date(at) : new Date();
  if (Number.isNaN(now.getTime())) return { exitCode: 2, stdout: '', stderr: `attest-sidecar verify-evidence: --at ${at} is not an ISO time\n` };
  let claims: Record<string, unknown> | undefined;
  let kind: AnyKind | undefined;
  let bytes: Buffer | undefined;
  try {
    bytes = readEvidenceBytes(file);
    const type = flag('type') ?? sniffEvidenceType(bytes);
    kind = type === undefined ? undefined : kindNamed(type);
    if (!kind?.offline) {
      const names = OFFLINE.map((k) => k.name).join(', ');
      return { exitCode: 2, stdout: '', stderr: `attest-sidecar verify-evidence: --type ${type ?? '(unknown)'} is not supported offline (${names})\n` };
    }
    const outcome = kind.offline.verify(bytes, values, now, FILES);
    if ('usage' in outcome) return { exitCode: 2, stdout: '', stderr: outcome.usage };
    if ('refused' in outcome) return result(false, outcome.refused, outcome.claims);
    claims = outcome.claims;
    if (policyFile) {
      const policy = loadPolicyFile(policyFile);
      const agent = policy.agents.find((a) => a.name === agentName);
      if (!agent) return result(false, `policy_mismatch: no agent named '${agentName}' in ${policyFile}`, claims);
      if (!agent.attestation) return result(false, `policy_mismatch: agent '${agentName}' has no attestation_requirements`, claims);
      appraise(outcome.normalized, agent.attestation, now);
    }
    return result(true, 'ok', claims);
  } catch (err) {
    if (err instanceof AttestationError) return result(false, `${err.reason}: ${err.message}`, claims ?? describeOnFailure(kind, bytes));
    return { exitCode: 1, stdout: JSON.stringify({ verified: false, reason: errorMessage(err), claims: claims ?? null }, null, 2) + '\n', stderr: '' };
  }
}

function describeOnFailure(kind: AnyKind | undefined, bytes: Buffer | undefined): unknown {
  try {
    return bytes && kind?.offline?.describeOnFailure ? kind.offline.describeOnFailure(bytes) : null;
  } catch {
    return null;
  }
}
