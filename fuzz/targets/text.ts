/**
 * Text formats from files and peers: the canonical request path, YAML policy / config /
 * reference values (signed: each mutated file is re-signed so the checks behind the signature
 * run), revocation lists, budget journal lines and snapshots, audit lines, and model usage
 * bodies (JSON and SSE, three providers).
 */
import { generateKeyPairSync, sign } from 'node:crypto';
import { parseReferenceValues } from '../../src/attestation/reference-values-parse.js';
import { AuditChainVerifier } from '../../src/audit/verify.js';
import { JsonLinesAuditSink } from '../../src/audit/sink.js';
import { encodeRecord, encodeSnapshot, parseSnapshot, replayJournal } from '../../src/budget/journal.js';
import { createUsageMeter } from '../../src/budget/usage/meter.js';
import { MODEL_PROVIDERS } from '../../src/budget/usage/types.js';
import { parseConfig } from '../../src/config/load.js';
import { canonicalRequestPath } from '../../src/policy/actions.js';
import { compilePolicy } from '../../src/policy/compile.js';
import { parseLocalList, serializeLocalList } from '../../src/revocation/local-file.js';
import { parseSharedList } from '../../src/revocation/shared-file.js';
import { EMPTY_LIST } from '../../src/revocation/state.js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FuzzTarget } from '../target.js';
import { repoFiles, text, utf8 } from '../seeds.js';

const NOW = new Date('2026-06-01T00:00:00Z');
const YAML_DICTIONARY = [': ', '- ', '\n', '  ', '{', '}', '[', ']', ',', '"', "'", '&a ', '*a', '<<: *a', '!!binary ', '!!str ', '? ', '|\n', '>\n', '---\n', '...\n', '#', '~', 'null', 'true', '0x', '1e999', '-1', '9007199254740993', '__proto__', 'constructor', '\t', '%TAG ! tag:x,2000:\n'];
const JSON_DICTIONARY = ['{', '}', '[', ']', ',', ':', '"', '\\u0000', '\\ud800', 'null', 'true', '-0', '1e999', '9007199254740993', '"__proto__"', '\n', '\t', '"usage"', '"input_tokens"', '"output_tokens"', '"prompt_tokens"', '"completion_tokens"', '"usageMetadata"', '"totalTokenCount"'];

const M1 = 'a1'.repeat(48);
const REFERENCE_VALUES = [
  'reference_values:',
  '  name: prod',
  '  expires: 2027-06-30T00:00:00Z',
  `  measurements: ["${M1}", "${'b2'.repeat(48)}"]`,
  '  minimum_security_version: 2',
  '  minimum_tcb: { bootloader: 3, tee: 0, snp: 8, microcode: 115 }',
  `  allowed_chip_ids: ["${'c3'.repeat(64)}"]`,
  `  pcrs: { 0: "${'00'.repeat(32)}", 7: "${'ab'.repeat(32)}" }`,
  `  tpm_ak_spki_sha256: ["${'d4'.repeat(32)}"]`,
  '',
].join('\n');

const SHARED_REVOCATIONS = 'revoked:\n  - spiffe_id: spiffe://td/agent\n    reason: compromised\n    at: 2026-01-01T00:00:00Z\n  - spiffe_id: spiffe://td/other\nall: { reason: incident 42 }\n';

/** Splits a body into up to four chunks at input-derived points (chunk boundaries matter to streaming parsers). */
function chunks(b: Uint8Array): Uint8Array[] {
  if (b.length < 4) return [b];
  const cut = [b[0]! % b.length, b[b.length - 1]! % b.length, (b[b.length >> 1]! * 7) % b.length].sort((x, y) => x - y);
  const out: Uint8Array[] = [];
  let at = 0;
  for (const c of [...cut, b.length]) {
    out.push(b.subarray(at, Math.max(at, c)));
    at = Math.max(at, c);
  }
  return out;
}

async function auditSeed(): Promise<Uint8Array> {
  const dir = mkdtempSync(path.join(tmpdir(), 'fuzz-audit-'));
  try {
    const file = path.join(dir, 'audit.log');
    const sink = new JsonLinesAuditSink(file, 'fuzz');
    for (let i = 0; i < 4; i++) sink.record({ type: 'inbound_decision', decision: i % 2 ? 'allow' : 'deny', reason: i % 2 ? 'allowed' : 'action_not_allowed', peer: `spiffe://td/agent-${i}`, path: `/v1/tool/${i}`, status: 200, latency_ms: 0.25 });
    await sink.flush();
    return readFileSync(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const usageTarget = (framing: 'json' | 'sse'): FuzzTarget => ({
  name: `usage-${framing}`,
  about: `model usage in a ${framing === 'sse' ? 'text/event-stream' : 'JSON'} response body (meter: decode, parse, count); first byte picks the provider`,
  hints: { dictionary: framing === 'sse' ? [...JSON_DICTIONARY, 'data: ', 'event: ', '\r\n', '\r', '\n\n', ':', 'data: [DONE]\n\n'] : JSON_DICTIONARY, maxBytes: 65536 },
  async prepare() {
    const files = repoFiles('fixtures/usage', framing === 'sse' ? '.sse' : '.json');
    return {
      seeds: files.map((f, i) => Buffer.concat([Buffer.from([i % MODEL_PROVIDERS.length]), f])),
      run: async (b) => {
        if (b.length === 0) return 'empty';
        const meter = createUsageMeter(MODEL_PROVIDERS[b[0]! % MODEL_PROVIDERS.length]!, {
          contentType: framing === 'sse' ? 'text/event-stream' : 'application/json',
          maxBufferBytes: 16384,
        });
        for (const c of chunks(b.subarray(1))) meter.push(c);
        return meter.end();
      },
    };
  },
});

export const TEXT_TARGETS: FuzzTarget[] = [
  {
    name: 'canonical-path',
    about: 'the request target as the policy matcher sees it (canonicalRequestPath)',
    hints: { dictionary: ['/', '//', '.', '..', '%2e', '%2E', '%2f', '%5c', '%00', '%', '%%', '?', '#', ';', '\\', '\u0000', '\u00e9', '%zz', '*', ':'], maxBytes: 8192 },
    async prepare() {
      return {
        seeds: ['/agents/7/status', '/v1/tool/x?y=1', '/a/b/../c', '/a%2Fb', '/%2e%2e/x', '//x', '/'].map(utf8),
        run: (b) => canonicalRequestPath(Buffer.from(b).toString('latin1')),
      };
    },
  },
  {
    name: 'policy-yaml',
    about: 'policy files (compilePolicy)',
    hints: { dictionary: [...YAML_DICTIONARY, 'agents:', 'agent_policy:', 'allowed_actions', 'spiffe_id', 'budget', 'limit_usd', 'period', 'attestation', 'tee_type', 'admins'], maxBytes: 32768 },
    async prepare() {
      return { seeds: [...repoFiles('fixtures/policies', '.yaml'), ...repoFiles('config/dev', 'policy.yaml')], run: (b) => compilePolicy(text(b), 'fuzz-policy.yaml', NOW) };
    },
  },
  {
    name: 'config-yaml',
    about: 'sidecar config files (parseConfig)',
    hints: { dictionary: [...YAML_DICTIONARY, 'identity:', 'source', 'inbound:', 'outbound:', 'routes', 'listen', 'admin:', 'attestation:', 'budget:', 'log:', 'state_dir'], maxBytes: 32768 },
    async prepare() {
      const seeds = [...repoFiles('config/dev', '.yaml'), ...repoFiles('config', '.yaml')];
      return { seeds, run: (b) => parseConfig(text(b), '<inline>', {}) };
    },
  },
  {
    name: 'reference-values-resigned',
    about: 'signed reference-value files: every mutated file re-signed, so the parser behind the signature runs',
    hints: { dictionary: [...YAML_DICTIONARY, 'reference_values:', 'measurements', 'minimum_tcb', 'pcrs', 'expires', 'allowed_chip_ids'], maxBytes: 32768 },
    async prepare() {
      const key = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      return {
        seeds: [utf8(REFERENCE_VALUES)],
        run: (b) => {
          const signature = utf8(sign('sha256', b, key.privateKey).toString('base64'));
          return parseReferenceValues(b, 'fuzz-reference-values.yaml', { keys: [key.publicKey], requireSignature: true, signature, now: NOW, name: 'prod' });
        },
      };
    },
  },
  {
    name: 'revocation-shared',
    about: 'shared revocation files, YAML or JSON (parseSharedList)',
    hints: { dictionary: [...YAML_DICTIONARY, ...JSON_DICTIONARY, 'revoked:', 'spiffe_id', 'reason', 'at', 'all:'], maxBytes: 32768 },
    async prepare() {
      return { seeds: [utf8(SHARED_REVOCATIONS)], run: (b) => parseSharedList(text(b), 'fuzz-shared.yaml', { now: () => NOW.getTime(), previous: EMPTY_LIST }) };
    },
  },
  {
    name: 'revocation-local',
    about: 'the local revocation state file (parseLocalList)',
    hints: { dictionary: [...JSON_DICTIONARY, '"version"', '"all"', '"revoked"', '"spiffe_id"', '"reason"', '"at"'], maxBytes: 32768 },
    async prepare() {
      const local = serializeLocalList(parseSharedList(SHARED_REVOCATIONS, 'seed', { now: () => NOW.getTime() }));
      return { seeds: [utf8(local)], run: (b) => parseLocalList(text(b), 'fuzz-local.json') };
    },
  },
  {
    name: 'budget-journal',
    about: 'budget journal files (replayJournal)',
    hints: { dictionary: [...JSON_DICTIONARY, '\t', '"k"', '"d"', '"t"', '00000000'], maxBytes: 32768 },
    async prepare() {
      const journal = ['a:total', 'b:2026-06', 'a:total'].map((k, i) => encodeRecord({ k, d: 250_000 * (i + 1), t: NOW.getTime() + i })).join('');
      return { seeds: [utf8(journal)], run: (b) => replayJournal(b, 'fuzz.journal') };
    },
  },
  {
    name: 'budget-snapshot',
    about: 'budget ledger snapshots (parseSnapshot)',
    hints: { dictionary: [...JSON_DICTIONARY, '"version"', '"journal"', '"totals"'], maxBytes: 32768 },
    async prepare() {
      return { seeds: [utf8(encodeSnapshot(3, [['a:total', 1_000_000], ['b:2026-06', 5]]))], run: (b) => parseSnapshot(text(b), 'fuzz.snapshot') };
    },
  },
  {
    name: 'audit-lines',
    about: 'audit log lines (AuditChainVerifier, strict and mixed)',
    hints: { dictionary: [...JSON_DICTIONARY, '"log":"audit"', '"seq":', '"prev":', '"hash":', '\n'], maxBytes: 65536 },
    async prepare() {
      const seed = await auditSeed();
      return {
        seeds: [seed],
        run: (b) => {
          for (const mixed of [false, true]) {
            const v = new AuditChainVerifier({ mixed, maxLineBytes: 4096 });
            for (const c of chunks(b)) v.update(c);
            v.finish();
          }
        },
      };
    },
  },
  usageTarget('json'),
  usageTarget('sse'),
];
