/** The header screen's verdict and what the app gets. */
import t from 'tap';
import { headerScreen } from '../../../src/proxy/inbound/filters/header-screen.js';
import { MAX_HEADERS, connection, context } from './fakes.js';

const many = Array.from({ length: MAX_HEADERS + 1 }, (_, i) => [`x-h${i}`, 'v']).flat();

t.test('header-screen: refusals and the forwarded list', async (t) => {
  const cases: [string, string[], { status: number; reason: string; error: RegExp } | undefined][] = [
    ['plain', ['host', 'app', 'accept', '*/*'], undefined],
    ["caller's identity fields are dropped", ['host', 'app', 'x-spiffe-id', 'spiffe://forged', 'x-forwarded-for', '1.2.3.4'], undefined],
    ['method override', ['host', 'app', 'X-HTTP-Method-Override', 'DELETE'], { status: 400, reason: 'override_header_refused', error: /X-HTTP-Method-Override/ }],
    ['look-alike override', ['host', 'app', 'x_original_url', '/admin'], { status: 400, reason: 'override_header_refused', error: /x_original_url/ }],
    ['too many fields', many, { status: 431, reason: 'request_headers_too_many', error: new RegExp(`limit ${MAX_HEADERS}`) }],
  ];
  for (const [name, raw, refused] of cases) {
    const ctx = context({ conn: connection(), raw });
    const out = headerScreen.onRequest(ctx);
    t.ok(ctx.requestId.length > 0, `${name}: a request id either way`);
    if (refused) {
      t.match(out, { status: refused.status, reason: refused.reason, error: refused.error }, name);
      continue;
    }
    t.equal(out, undefined, name);
    t.strictSame(ctx.headers.slice(0, 4), ['x-spiffe-id', 'spiffe://mesh.local/orchestrator', 'x-request-id', ctx.requestId], `${name}: identity first`);
    t.notOk(ctx.headers.includes('spiffe://forged') || ctx.headers.includes('1.2.3.4'), `${name}: no caller identity`);
  }
});
