import t from 'tap';
import { appraise, type NormalizedClaims } from '../../src/attestation/appraise.js';
import { AttestationError } from '../../src/attestation/types.js';
import type { AttestationRequirements } from '../../src/attestation/requirements.js';

const M = 'a1'.repeat(48);
const CHIP = 'c3'.repeat(64);
const good: NormalizedClaims = {
  evidence_type: 'az-snp-vtpm',
  tee_type: 'sev-snp',
  runtime_environment: 'az-confidential-compute',
  measurement: M,
  guest_svn: 5,
  debug: false,
  tcb: { bootloader: 3, tee: 0, snp: 8, microcode: 115 },
  chip_id: CHIP,
  pcrs: { '0': 'aa'.repeat(32) },
};
const now = new Date('2026-11-22T12:00:00Z');
const full: AttestationRequirements = {
  teeType: 'sev-snp',
  runtimeEnvironment: 'az-confidential-compute',
  expectedMeasurements: [M],
  minimumSecurityVersion: 2,
  minimumTcb: { bootloader: 3, snp: 8 },
  requireRuntimeDebugDisabled: true,
  allowedChipIds: [CHIP],
  pcrs: { '0': 'AA'.repeat(32) },
};

function reason(claims: NormalizedClaims, req: AttestationRequirements): string {
  try {
    appraise(claims, req, now);
    return 'ok';
  } catch (err) {
    if (!(err instanceof AttestationError)) throw err;
    return err.reason;
  }
}

t.test('the documented requirements pass on matching claims', async (t) => {
  t.equal(reason(good, full), 'ok');
  t.equal(reason(good, { teeType: 'az-snp-vtpm' }), 'ok', 'tee_type may also name the evidence type');
  t.equal(reason(good, {}), 'ok');
});

t.test('each requirement fails closed with its reason', async (t) => {
  const cases: [string, Partial<NormalizedClaims>, Partial<AttestationRequirements>, string][] = [
    ['tee type', { evidence_type: 'sim', tee_type: 'sim' }, {}, 'policy_mismatch'],
    ['environment', { runtime_environment: undefined }, {}, 'policy_mismatch'],
    ['measurement', { measurement: 'b2'.repeat(48) }, {}, 'measurement_mismatch'],
    ['no measurement', { measurement: undefined }, {}, 'measurement_mismatch'],
    ['svn', { guest_svn: 1 }, {}, 'svn_too_low'],
    ['no svn', { guest_svn: undefined }, {}, 'svn_too_low'],
    ['tcb', { tcb: { bootloader: 2, tee: 0, snp: 8, microcode: 115 } }, {}, 'tcb_too_low'],
    ['tcb component missing', { tcb: { bootloader: 3 } }, {}, 'tcb_too_low'],
    ['debug', { debug: true }, {}, 'debug_enabled'],
    ['debug unknown', { debug: undefined }, {}, 'debug_enabled'],
    ['chip', { chip_id: 'd4'.repeat(64) }, {}, 'chip_not_allowed'],
    ['chip prefix is not enough', { chip_id: CHIP.slice(0, 16) }, {}, 'chip_not_allowed'],
    ['pcr', { pcrs: { '0': 'ab'.repeat(32) } }, {}, 'pcr_mismatch'],
    ['pcr missing', { pcrs: {} }, {}, 'pcr_mismatch'],
  ];
  for (const [name, claims, req, want] of cases) {
    t.equal(reason({ ...good, ...claims }, { ...full, ...req }), want, name);
  }
});

t.test('max evidence age applies to evidence that carries a time', async (t) => {
  const sim: NormalizedClaims = { evidence_type: 'sim', tee_type: 'sim', issued_at: '2026-11-22T11:50:00Z' };
  t.equal(reason(sim, { teeType: 'sim', maxEvidenceAgeSeconds: 3600 }), 'ok');
  t.equal(reason(sim, { teeType: 'sim', maxEvidenceAgeSeconds: 300 }), 'evidence_stale');
});

t.test('sim evidence only satisfies policies that name tee_type: sim', async (t) => {
  const sim: NormalizedClaims = { evidence_type: 'sim', tee_type: 'sim', measurement: M, debug: false };
  t.equal(reason(sim, { teeType: 'sim', expectedMeasurements: [M] }), 'ok');
  t.equal(reason(sim, { expectedMeasurements: [M] }), 'policy_mismatch', 'no tee_type named');
  t.equal(reason(sim, {}), 'policy_mismatch');
});
