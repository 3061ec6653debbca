import t from 'tap';
import {
  appLeadHeaders,
  isWellFormedRequestId,
  newRequestId,
  outboundRequestId,
  screenInboundHeaders,
  tooManyHeadersRefusal,
} from '../../src/proxy/request-headers.js';

const LEAD = appLeadHeaders('spiffe://td/server', { id: 'spiffe://td/agent', leafSha256Hex: 'ab'.repeat(32) }, '10.0.0.7');
const screen = (raw: string[], max = 100) => screenInboundHeaders(raw, max, tooManyHeadersRefusal(max), LEAD);
const UUID_V8 = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

t.test('the lead: identity, then the facts of the mTLS hop', async (t) => {
  t.same(LEAD, [
    'x-forwarded-client-cert', `By=spiffe://td/server;Hash=${'ab'.repeat(32)};URI=spiffe://td/agent`,
    'x-spiffe-id', 'spiffe://td/agent',
    'x-forwarded-proto', 'https',
    'x-forwarded-for', '10.0.0.7',
  ]);
  t.same(appLeadHeaders('spiffe://td/s', { id: 'spiffe://td/a', leafSha256Hex: '00' }, undefined).length, 6, 'no address, no x-forwarded-for');
});

t.test('forwarded list: the lead and request id first, caller fields after, replaced and look-alike fields gone', async (t) => {
  const r = screen([
    'Host', 'control-plane',
    'X-Spiffe-Id', 'spiffe://evil/x',
    'x_spiffe_id', 'spiffe://evil/y',
    'X-SPIFFE_ID', 'spiffe://evil/z',
    'X_Forwarded_Client_Cert', 'By=evil',
    'X-Forwarded-For', '6.6.6.6',
    'x_forwarded_for', '6.6.6.7',
    'X-Forwarded-Proto', 'http',
    'X-Forwarded-Host', 'evil.example',
    'X-Forwarded-Port', '80',
    'X-Forwarded-Prefix', '/admin',
    'x-forwarded-anything-else', '1',
    'Forwarded', 'for=6.6.6.6;proto=http',
    'X-Real-IP', '6.6.6.6',
    'x_real_ip', '6.6.6.6',
    'Attest-Evidence', 'smuggled',
    'attest_evidence_ref', 'smuggled',
    'X-Request-Id', 'req-42',
    'x_request_id', 'other',
    'x_custom_thing', 'kept',
    'X-Forwarded', 'kept: not a forwarding field name',
    'Accept', '*/*',
    'Connection', 'keep-alive, X-Private',
    'X-Private', 'hop',
    'Keep-Alive', 'timeout=5',
  ]);
  t.ok(r.ok);
  if (!r.ok) return;
  t.equal(r.requestId, 'req-42', "the caller's well-formed id is kept");
  t.same(r.headers, [
    ...LEAD,
    'x-request-id', 'req-42',
    'Host', 'control-plane',
    'x_custom_thing', 'kept',
    'X-Forwarded', 'kept: not a forwarding field name',
    'Accept', '*/*',
  ]);
});

t.test('method and URL overrides, in any case and with underscores, are refused', async (t) => {
  for (const name of ['X-HTTP-Method-Override', 'x-http-method', 'X-Method-Override', 'X-Original-URL', 'x-rewrite-url', 'x_http_method_override', 'X_ORIGINAL_URL']) {
    const r = screen(['Host', 'h', name, 'DELETE', 'X-Request-Id', 'abc']);
    t.match(r, { ok: false, status: 400, reason: 'override_header_refused', requestId: 'abc' }, name);
    if (!r.ok) t.same(JSON.parse(r.body), { error: `Request header '${name}' is refused: it would make the app act on another method or path than the policy decided` });
  }
  const listed = screen(['Host', 'h', 'Connection', 'x-http-method-override', 'x-http-method-override', 'DELETE']);
  t.ok(listed.ok, 'a hop-by-hop copy (named in Connection) never reaches the app, so it is dropped, not refused');
  if (listed.ok) t.notOk(listed.headers.some((h) => h.toLowerCase() === 'x-http-method-override'));
});

t.test('header count: more than the limit is refused before anything else', async (t) => {
  const fields = (n: number) => Array.from({ length: n }, (_, i) => [`x-f${i}`, 'v']).flat();
  t.ok(screen(fields(100)).ok, 'exactly the limit passes');
  const over = screen([...fields(100), 'X-HTTP-Method-Override', 'DELETE']);
  t.match(over, { ok: false, status: 431, reason: 'request_headers_too_many' });
  if (!over.ok) {
    t.same(JSON.parse(over.body), { error: 'Too many request headers (limit 100)' });
    t.match(over.requestId, UUID_V8, 'a refused request still gets an id for its record');
  }
  t.match(screen(fields(17), 16), { ok: false, status: 431 });
  t.match(screen(fields(999)), { ok: false, status: 431 }, "about 1,000 fields (all Node's parser keeps)");
});

t.test('request id: kept when single and well-formed, generated otherwise', async (t) => {
  const idOf = (raw: string[]) => {
    const r = screen(['Host', 'h', ...raw]);
    return r.ok ? r.requestId : `refused ${r.reason}`;
  };
  for (const good of ['f47ac10b-58cc-4372-a567-0e02b2c3d479', '01HGW2N7EHJX9V5Z7Q6X1W3K4B', 'a', 'svc:1234.5@host_x', 'x'.repeat(128)]) {
    t.equal(idOf(['X-Request-ID', good]), good, good);
    t.equal(outboundRequestId(['x-request-id', good]), good);
  }
  for (const bad of ['', 'x'.repeat(129), 'has space', 'a,b', 'quote"', 'slash/x', 'plus+', 'caf\u00e9', 'nl\n']) {
    t.match(idOf(['x-request-id', bad]), UUID_V8, JSON.stringify(bad));
    t.match(outboundRequestId(['X-Request-Id', bad]), UUID_V8);
  }
  t.match(idOf(['x-request-id', 'a', 'x-request-id', 'b']), UUID_V8, 'two ids: ambiguous, replaced');
  t.match(outboundRequestId(['x-request-id', 'a', 'X-Request-Id', 'a']), UUID_V8);
  t.match(idOf(['x_request_id', 'a']), UUID_V8, 'a look-alike is never taken as the id');
  t.match(idOf([]), UUID_V8);
  t.ok(isWellFormedRequestId('abc-123'));
});

t.test('generated ids: version-8 UUIDs, distinct', async (t) => {
  const seen = new Set<string>();
  for (let i = 0; i < 10_000; i++) seen.add(newRequestId());
  t.equal(seen.size, 10_000);
  for (const id of [...seen].slice(0, 50)) t.match(id, UUID_V8);
});

t.test('agrees with a plain model of the policy on 20000 generated header lists', async (t) => {
  const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-authenticate']);
  const REPLACED = new Set(['x-spiffe-id', 'x-forwarded-client-cert', 'forwarded', 'x-real-ip', 'attest-evidence', 'attest-evidence-ref', 'attest-nonce', 'attest-challenge', 'x-request-id']);
  const OVERRIDE = new Set(['x-http-method-override', 'x-http-method', 'x-method-override', 'x-original-url', 'x-rewrite-url']);
  const model = (raw: string[]) => {
    const listed = new Set<string>();
    for (let i = 0; i < raw.length; i += 2) {
      if (raw[i]!.toLowerCase() === 'connection') for (const tok of raw[i + 1]!.split(',')) listed.add(tok.trim().toLowerCase());
    }
    const kept: string[] = [];
    let refused = false;
    for (let i = 0; i < raw.length; i += 2) {
      const lower = raw[i]!.toLowerCase();
      if (HOP.has(lower) || listed.has(lower)) continue;
      const key = lower.replace(/_/g, '-');
      if (OVERRIDE.has(key)) refused = true;
      else if (!REPLACED.has(key) && !key.startsWith('x-forwarded-')) kept.push(raw[i]!, raw[i + 1]!);
    }
    return { refused, kept };
  };
  const names = [
    'Host', 'Accept', 'content-type', 'X-Spiffe-Id', 'x_spiffe_id', 'X-SPIFFE_ID', 'X-Forwarded-For', 'x_forwarded_foo', 'X-Forwarded', 'x-forwarded-',
    'xforwarded-for', 'Forwarded', 'forwarded_', 'x-http-method', 'X_HTTP_METHOD', 'X-Original-Url', 'x-original-urls', 'x-request-id', 'X_Request_Id',
    'x-request-ids', 'Connection', 'x-custom', 'X-Custom', 'x_custom', 'attest-nonce', 'Attest_Evidence', 'te', 'Keep-Alive', 'x-real-ip', 'X-Real_IP', 'Upgrade',
  ];
  const connectionValues = ['keep-alive', 'close', 'x-custom', 'X-HTTP-Method, x-custom', 'close, X_Custom, x-real-ip'];
  let seed = 11;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  let disagreements = 0;
  for (let i = 0; i < 20000; i++) {
    const raw: string[] = [];
    for (let j = rand(8); j >= 0; j--) {
      const name = names[rand(names.length)]!;
      raw.push(name, name === 'Connection' ? connectionValues[rand(connectionValues.length)]! : `v${j}`);
    }
    const got = screen(raw);
    const want = model(raw);
    const same = got.ok ? !want.refused && JSON.stringify(got.headers.slice(LEAD.length + 2)) === JSON.stringify(want.kept) : want.refused && got.reason === 'override_header_refused';
    if (!same && ++disagreements < 5) t.fail(`${JSON.stringify(raw)}: got ${JSON.stringify(got)}`);
  }
  t.equal(disagreements, 0);
});
