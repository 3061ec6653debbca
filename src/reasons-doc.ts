/**
 * The reason-code documentation, generated from the catalogue (src/reasons.ts): docs/reasons.md
 * (every code, by kind) and the README's short denial table (the refused requests). Pure: text
 * in, text out; `npm run docs:reasons` writes the files and a test fails when they differ.
 */
import { REASONS, type ReasonCode, type ReasonKind, type ReasonSpec } from './reasons.js';

export const REGION_BEGIN = '<!-- reasons:begin -->';
export const REGION_END = '<!-- reasons:end -->';

/** The sections of docs/reasons.md, in order, with what their codes are. */
const SECTIONS: readonly { kind: ReasonKind; title: string; intro: string }[] = [
  {
    kind: 'request',
    title: 'Refused requests',
    intro: 'The caller gets the status and the JSON body; the audit record (`inbound_decision` or `outbound_decision`) and `attest_sidecar_requests_total` carry the code.',
  },
  {
    kind: 'attestation',
    title: 'Attestation failures',
    intro: "Evidence that did not verify or did not satisfy the agent's `attestation_requirements`: 403, the code in the audit record and in `attest_sidecar_attestation_verifications_total`.",
  },
  {
    kind: 'connection',
    title: 'Refused connections',
    intro: 'Bytes that never became a request get a last JSON answer; the other connections are closed without one. Audited as `connection_refused` (aggregated per kind and 10 s) and counted in `attest_sidecar_connections_refused_total`.',
  },
  {
    kind: 'handshake',
    title: 'Refused TLS peers',
    intro: 'The connection is closed before any byte of HTTP is read. Audited as `peer_rejected` (handshake failures aggregated) and counted in `attest_sidecar_peer_rejections_total`; the message is the audit `detail`.',
  },
  {
    kind: 'admin',
    title: 'Admin API refusals',
    intro: 'Answers of the admin listeners (pretty-printed JSON). Authentication failures are audited as `admin_auth_failed`, failed mutations as `admin_action`.',
  },
  {
    kind: 'config',
    title: 'Configuration, policy and state files',
    intro: 'A file refused at start-up stops the sidecar with the message; one refused on reload is logged and the last valid version stays in force.',
  },
  {
    kind: 'failure',
    title: 'Operational failures',
    intro: 'Failures inside a part, logged (and counted or audited where noted); a request they affect is answered with the refusal of its own code above.',
  },
  {
    kind: 'audit',
    title: '`audit verify` findings',
    intro: 'Problems `attest-sidecar audit verify` reports in an audit log (it exits non-zero).',
  },
  {
    kind: 'outcome',
    title: 'Outcomes',
    intro: 'Not refusals: the `reason` of allowed exchanges and of operator and audit events.',
  },
];

const WHERE_LABEL: Readonly<Record<string, string>> = {
  inbound: 'inbound',
  outbound: 'outbound',
  both: 'both',
  'any listener': 'any listener',
  admin: 'admin',
  'start-up': 'start-up',
  runtime: 'runtime',
  'audit verify': 'audit verify',
};

function codes(kind: ReasonKind): ReasonCode[] {
  return (Object.keys(REASONS) as ReasonCode[]).filter((c) => REASONS[c].kind === kind);
}

/** A table cell: `|` would end it and a line break would end the row. */
function cell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ');
}

/** The body as the caller sees it, in the README's style: `{"error": "..."}`. */
function bodyText(message: string): string {
  return `\`{"error": ${JSON.stringify(message)}}\``;
}

function spec(code: ReasonCode): ReasonSpec {
  return REASONS[code];
}

function bodyCell(entry: ReasonSpec, message = entry.message): string {
  if (entry.status === undefined) return entry.message === '' ? '' : `\`${entry.message}\``;
  const headers = entry.headers ? ` + \`${entry.headers}\`` : '';
  return cell(bodyText(message) + headers);
}

function docCell(entry: ReasonSpec): string {
  return cell(entry.decision === 'error' ? `${entry.doc} (audited as \`error\`)` : entry.doc);
}

/** docs/reasons.md: every code of the catalogue, grouped by kind. */
export function reasonsMarkdown(): string {
  const out: string[] = [
    '# Reason codes',
    '',
    '<!-- Generated from src/reasons.ts by `npm run docs:reasons`; edit the catalogue, not this file. -->',
    '',
    'Every refusal and outcome the sidecar reports carries one stable, snake_case reason code: the',
    "caller's JSON body, the audit record's `reason` and the metrics' `reason` label use the same one,",
    'so an operator can grep one string across all three. Messages with `<placeholders>` name what',
    'was refused; the rest are fixed text. "Closes" means the connection is closed after the answer.',
    '',
  ];
  for (const section of SECTIONS) {
    const list = codes(section.kind);
    if (list.length === 0) continue;
    out.push(`## ${section.title}`, '', section.intro, '');
    const withStatus = list.some((c) => spec(c).status !== undefined);
    if (withStatus) {
      out.push('| status | body | reason code | where | closes | when |', '|---|---|---|---|---|---|');
      for (const c of list) {
        const entry = spec(c);
        out.push(`| ${entry.status ?? ''} | ${bodyCell(entry)} | \`${c}\` | ${WHERE_LABEL[entry.where ?? ''] ?? ''} | ${entry.close ? 'yes' : ''} | ${docCell(entry)} |`);
      }
    } else if (list.some((c) => spec(c).close)) {
      out.push('| reason code | where | message | closes | when |', '|---|---|---|---|---|');
      for (const c of list) {
        const entry = spec(c);
        out.push(`| \`${c}\` | ${WHERE_LABEL[entry.where ?? ''] ?? ''} | ${bodyCell(entry)} | ${entry.close ? 'yes' : ''} | ${docCell(entry)} |`);
      }
    } else if (list.every((c) => spec(c).message === '')) {
      out.push('| reason code | where | when |', '|---|---|---|');
      for (const c of list) out.push(`| \`${c}\` | ${WHERE_LABEL[spec(c).where ?? ''] ?? ''} | ${docCell(spec(c))} |`);
    } else {
      out.push('| reason code | where | message | when |', '|---|---|---|---|');
      for (const c of list) {
        const entry = spec(c);
        out.push(`| \`${c}\` | ${WHERE_LABEL[entry.where ?? ''] ?? ''} | ${bodyCell(entry)} | ${docCell(entry)} |`);
      }
    }
    out.push('');
  }
  return out.join('\n');
}

/** The kinds of the README's short table: what a caller of the data plane can be answered. */
const README_KINDS: ReadonlySet<ReasonKind> = new Set<ReasonKind>(['request', 'attestation', 'connection']);

/**
 * The README's denial table (status | body | reason code): the refusals that have a body, codes
 * with the same answer on one row (a code alone on its row says when it happens), examples in
 * place of patterns where the catalogue has one.
 */
export function readmeDenialTable(): string {
  const rows = new Map<string, { status: string; body: string; codes: ReasonCode[] }>();
  for (const c of Object.keys(REASONS) as ReasonCode[]) {
    const entry = spec(c);
    if (!README_KINDS.has(entry.kind) || entry.status === undefined) continue;
    const status = `${entry.status}${entry.where === 'outbound' ? ' (outbound)' : entry.where === 'any listener' ? ' (any listener)' : ''}`;
    const body = bodyCell(entry, entry.example ?? entry.message);
    const key = `${status}\0${body}`;
    const row = rows.get(key);
    if (row) row.codes.push(c);
    else rows.set(key, { status, body, codes: [c] });
  }
  const out = ['| status | body | reason code |', '|---|---|---|'];
  for (const r of rows.values()) out.push(`| ${r.status} | ${r.body} | ${r.codes.length === 1 ? readmeNote(r.codes[0]!) : r.codes.map((c) => `\`${c}\``).join(', ')} |`);
  out.push('', 'What each code means, and the codes of refused connections, TLS peers, admin requests and files: [docs/reasons.md](docs/reasons.md).');
  return out.join('\n');
}

/** A code alone on its row, with when it happens. */
function readmeNote(code: ReasonCode): string {
  const entry = spec(code);
  return cell(`\`${code}\` (${entry.doc}${entry.close ? '; the connection is closed after the answer' : ''})`);
}

/** `text` with the region between the reasons markers replaced by `region`; throws when the markers are missing. */
export function replaceRegion(text: string, region: string): string {
  const begin = text.indexOf(REGION_BEGIN);
  const end = text.indexOf(REGION_END);
  if (begin === -1 || end === -1 || end < begin) throw new Error(`the markers ${REGION_BEGIN} and ${REGION_END} are missing or out of order`);
  if (text.indexOf(REGION_BEGIN, begin + 1) !== -1) throw new Error(`${REGION_BEGIN} appears more than once`);
  return `${text.slice(0, begin + REGION_BEGIN.length)}\n${region}\n${text.slice(end)}`;
}
