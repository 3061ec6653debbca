/**
 * Finds the string literals a TypeScript source passes as reason codes: to the typed errors and
 * the refusal builders, as `reason` properties and defaults, as the fallback of `err.reason`,
 * and after an audit decision (`'deny', 'code'`) or a refusal body (`..._BODY, 'code'`). The
 * types check most of these; this catches `as` casts, `string`-typed paths and JS callers.
 */

/** Classes whose first constructor argument is the reason code. */
const REASON_FIRST_CLASSES = [
  'SidecarError',
  'AttestationError',
  'SvidVerificationError',
  'BundleError',
  'X509SvidError',
  'TsmError',
  'WorkloadApiError',
  'PeerIdentityError',
  'ReferenceValuesError',
];

/** A literal that could be a code: one word (messages and other strings never are). */
const CODE = "'([A-Za-z][A-Za-z0-9_]*)'";

const PATTERNS: readonly RegExp[] = [
  new RegExp(`\\bnew (?:${REASON_FIRST_CLASSES.join('|')})\\(\\s*${CODE}`, 'g'),
  new RegExp(`\\b(?:refusal|refuse|adminRefusal|refusedAdmission|rawAnswer|ledgerFailure)\\(\\s*${CODE}`, 'g'),
  // `reason: 'x'`, `reason = 'x'` and `err.reason : 'x'`.
  new RegExp(`\\breason\\??\\s*[:=]\\s*${CODE}`, 'g'),
  // An audit decision, then the code, then more arguments: `record(start, 'deny', 'x', 405, ...)`.
  new RegExp(`'(?:allow|deny|error)',\\s*${CODE},\\s*\\w`, 'g'),
  new RegExp(`_BODY,\\s*${CODE}`, 'g'),
  new RegExp(`\\b(?:connectionRefused|peerRejected|upstreamError|budgetRefused|usageUnmetered|adminAuthFailed)\\([^()']*${CODE}\\)`, 'g'),
];

/** Calls whose last argument is a reason code (ConfigError's third, ProblemsError's second). */
const LAST_ARGUMENT_CALLS = /\bnew (ConfigError|ProblemsError)\(/g;

export interface FoundLiteral {
  readonly code: string;
  readonly line: number;
}

export function reasonLiterals(source: string): FoundLiteral[] {
  const found: FoundLiteral[] = [];
  const lineOf = (index: number) => source.slice(0, index).split('\n').length;
  for (const pattern of PATTERNS) {
    for (const m of source.matchAll(pattern)) found.push({ code: m[1]!, line: lineOf(m.index!) });
  }
  for (const m of source.matchAll(LAST_ARGUMENT_CALLS)) {
    const args = callArguments(source, m.index! + m[0].length);
    const minArgs = m[1] === 'ConfigError' ? 3 : 2;
    const last = args.length >= minArgs ? args[args.length - 1]!.trim() : undefined;
    const literal = last !== undefined ? new RegExp(`^${CODE}$`).exec(last) : null;
    if (literal) found.push({ code: literal[1]!, line: lineOf(m.index!) });
  }
  return found;
}

/** The top-level arguments of the call whose `(` ends just before `start`. */
function callArguments(source: string, start: number): string[] {
  const args: string[] = [];
  let depth = 0;
  let quote: string | undefined;
  let from = start;
  for (let i = start; i < source.length; i++) {
    const ch = source[i]!;
    if (quote !== undefined) {
      if (ch === '\\') i++;
      else if (ch === quote) quote = undefined;
      continue;
    }
    if (ch === "'" || ch === '"' || ch === '`') quote = ch;
    else if (ch === '(' || ch === '[' || ch === '{') depth++;
    else if (ch === ')' || ch === ']' || ch === '}') {
      if (depth === 0) {
        if (source.slice(from, i).trim() !== '') args.push(source.slice(from, i));
        return args;
      }
      depth--;
    } else if (ch === ',' && depth === 0) {
      args.push(source.slice(from, i));
      from = i + 1;
    }
  }
  return args;
}
