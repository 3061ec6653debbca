/**
 * SPIFFE ID and trust domain readers for config and policy files: each returns a result
 * object instead of throwing, so the caller can attach a file position to the message.
 */
import { errorMessage } from '../errors.js';
import type { ValueResult } from '../lib/values.js';
import { parseSpiffeId, parseTrustDomain } from './id.js';

/**
 * A workload SPIFFE ID as written (valid IDs are already canonical). IDs without a path
 * name a trust domain; no X509-SVID carries one, so such an entry could never match.
 */
export function checkWorkloadSpiffeId(value: string): ValueResult<string> {
  try {
    const id = parseSpiffeId(value);
    if (id.path === '') {
      return { ok: false, error: `'${value}' names only a trust domain; a workload SPIFFE ID needs a path` };
    }
    return { ok: true, value };
  } catch (err) {
    return { ok: false, error: `invalid SPIFFE ID: ${errorMessage(err)}` };
  }
}

/** A trust domain name, from `name` or `spiffe://name` (a path is refused, not ignored). */
export function checkTrustDomain(value: string): ValueResult<string> {
  try {
    if (value.includes(':/') && parseSpiffeId(value).path !== '') {
      return { ok: false, error: `'${value}' has a path; a trust domain is just the name (e.g. 'example.org')` };
    }
    return { ok: true, value: parseTrustDomain(value).name };
  } catch (err) {
    return { ok: false, error: `invalid trust domain: ${errorMessage(err)}` };
  }
}
