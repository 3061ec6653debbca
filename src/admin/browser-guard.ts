/**
 * Refuses admin mutations a web browser sent on behalf of a page other than the status page.
 * A page on any origin can make the operator's browser POST to a loopback port (a form, or
 * fetch with mode 'no-cors'); it cannot read the answer, but it must not be able to reach the
 * kill switch at all, nor feed the authentication throttle. Checked before authentication and
 * never counted as a failed attempt.
 *
 * Browsers mark their requests: Origin on every cross-origin POST, Sec-Fetch-Site/-Dest/-Mode
 * (Fetch Metadata) on all of them. Command-line clients send none of these, except Node's
 * fetch, which sends `Sec-Fetch-Mode: cors` alone. The status page's own same-origin fetch
 * (JSON body, Origin equal to the admin listener's) is the one browser request allowed.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { ReasonCode } from '../reasons.js';

export const BROWSER_REFUSED_REASON = 'admin_browser_request' satisfies ReasonCode;

/** Content types a page can send cross-origin without a CORS preflight: HTML forms and plain text. */
const SIMPLE_FORM_TYPES = ['application/x-www-form-urlencoded', 'multipart/form-data', 'text/plain'];

/** Fetch Metadata values allowed on an admin mutation (absent headers are always allowed). */
const ALLOWED_FETCH_METADATA: Readonly<Record<string, readonly string[]>> = {
  'sec-fetch-site': ['same-origin'],
  'sec-fetch-mode': ['cors', 'same-origin'],
  'sec-fetch-dest': ['empty'],
};

/**
 * Why a mutation request looks browser-originated (and is refused), or undefined. `ownOrigin`
 * is the admin listener's origin as the request names it: `http://` or `https://` + Host.
 */
export function browserRefusal(headers: IncomingHttpHeaders, ownOrigin: string): string | undefined {
  const type = (headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (SIMPLE_FORM_TYPES.includes(type)) {
    return `admin requests must send 'content-type: application/json' (a '${type}' body is what a web page's form can send)`;
  }
  const origin = headers.origin;
  if (origin !== undefined && origin.toLowerCase() !== ownOrigin.toLowerCase()) {
    return `admin requests from web pages are refused (Origin '${origin.slice(0, 100)}'); use the CLI, curl or the status page`;
  }
  for (const [name, allowed] of Object.entries(ALLOWED_FETCH_METADATA)) {
    const value = headers[name];
    if (typeof value === 'string' && !allowed.includes(value.toLowerCase())) {
      return `admin requests from web pages are refused (${name}: ${value.slice(0, 40)}); use the CLI, curl or the status page`;
    }
  }
  return undefined;
}
