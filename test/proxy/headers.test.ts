import t from 'tap';
import { forwardRequestHeaders, forwardResponseHeaders, isBrowserRequest, responseHeaderList, responseHeaderObject, xfccValue } from '../../src/proxy/headers.js';

t.test('request headers: hop-by-hop, Connection-listed and dropped names go, in any case', async (t) => {
  const drop = new Set(['x-spiffe-id', 'x-forwarded-client-cert']);
  const raw = [
    'Host', 'control-plane',
    'CONNECTION', 'keep-alive, X-Private-Hop',
    'Keep-Alive', 'timeout=5',
    'TE', 'trailers',
    'Transfer-Encoding', 'chunked',
    'Proxy-Authorization', 'Basic eA==',
    'X-Private-Hop', 'secret',
    'X-Spiffe-Id', 'spiffe://evil/x',
    'x-forwarded-client-cert', 'By=evil',
    'User-Agent', 'agent/1.0',
    'Upgrade', 'websocket',
    'Content-Length', '2',
  ];
  t.same(forwardRequestHeaders(raw, drop, ['x-spiffe-id', 'spiffe://good/a']), [
    'x-spiffe-id', 'spiffe://good/a', 'Host', 'control-plane', 'User-Agent', 'agent/1.0', 'Content-Length', '2',
  ], "the sidecar's own fields go first");
  t.same(forwardRequestHeaders(['connection', 'close', 'accept', '*/*'], undefined), ['accept', '*/*']);
  t.same(forwardRequestHeaders(['X-SPIFFE-ID', 'x', 'Accept', 'y'], drop), ['Accept', 'y'], 'upper-case copies of dropped names go too');
  // The common values take a fast path; anything else is still split and listed.
  t.same(forwardRequestHeaders(['Connection', 'keep-alive', 'Accept', 'y', 'close', 'z'], undefined), ['Accept', 'y', 'close', 'z']);
  t.same(forwardRequestHeaders(['Connection', 'Keep-Alive', 'x-a', '1'], undefined), ['x-a', '1'], 'Keep-Alive in any case lists nothing');
  t.same(forwardRequestHeaders(['Connection', 'close,x-a', 'x-a', '1', 'x-b', '2'], undefined), ['x-b', '2']);
  t.same(forwardRequestHeaders(['Connection', 'keep-alive', 'Connection', 'X-A', 'x-a', '1'], undefined), [], 'every Connection field counts');
});

t.test('response headers, browser detection, XFCC', async (t) => {
  t.same(forwardResponseHeaders({ 'content-type': 'text/plain', connection: 'x-hop', 'x-hop': '1', 'keep-alive': 'timeout=5', 'transfer-encoding': 'chunked' }), { 'content-type': 'text/plain' });
  t.same(forwardResponseHeaders({ 'content-type': 'text/plain', connection: 'keep-alive', 'keep-alive': 'timeout=5' }), { 'content-type': 'text/plain' });
  t.same(forwardResponseHeaders({ connection: 'close', date: 'x' }), { date: 'x' });
  t.same(forwardResponseHeaders({ connection: 'Keep-Alive, X-Hop', 'x-hop': '1', date: 'x' }), { date: 'x' });
  t.equal(isBrowserRequest({ origin: 'https://evil.example' }), true);
  t.equal(isBrowserRequest({ 'sec-fetch-site': 'none' }), true);
  t.equal(isBrowserRequest({ 'user-agent': 'curl/8' }), false);
  // What Chromium sends on a proxied plain-http no-cors GET with no referrer: no Origin, no Sec-Fetch-*.
  const chromium = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36';
  t.equal(isBrowserRequest({ 'user-agent': chromium, accept: '*/*', 'accept-language': 'en-US,en;q=0.9' }), true);
  t.equal(isBrowserRequest({ 'sec-purpose': 'prefetch' }), true);
  t.equal(isBrowserRequest({ 'upgrade-insecure-requests': '1' }), true);
  // Node's fetch (undici) sends sec-fetch-mode and accept-language on its own: not a browser.
  t.equal(isBrowserRequest({ 'user-agent': 'node', accept: '*/*', 'accept-language': '*', 'sec-fetch-mode': 'cors' }), false);
  for (const ua of ['python-requests/2.32', 'Go-http-client/1.1', 'undici', 'OpenAI/Python 1.40.0']) t.equal(isBrowserRequest({ 'user-agent': ua }), false, ua);
  t.equal(xfccValue('spiffe://a/b', 'ab'.repeat(32), 'spiffe://a/c'), `By=spiffe://a/b;Hash=${'ab'.repeat(32)};URI=spiffe://a/c`);
});

t.test("undici's raw response headers: the flat list for writeHead and the object form", async (t) => {
  const b = (...v: string[]) => v.map((s) => Buffer.from(s, 'latin1'));
  const raw = b(
    'Content-Type', 'text/plain',
    'CONNECTION', 'keep-alive, X-Hop',
    'Keep-Alive', 'timeout=5',
    'Transfer-Encoding', 'chunked',
    'x-hop', 'private',
    'Set-Cookie', 'a=1',
    'set-cookie', 'b=2',
    'Proxy-Authenticate', 'Basic',
    'Trailer', 'x-t',
    'Upgrade', 'h2c',
    'X-Latin1', 'caf\u00e9',
  );
  t.same(responseHeaderList(raw), ['Content-Type', 'text/plain', 'Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'X-Latin1', 'caf\u00e9'], 'names keep their case, repeats stay');
  t.same(responseHeaderList(b('Connection', 'close', 'Content-Length', '0')), ['Content-Length', '0']);
  t.same(responseHeaderList(b('x-a', '1', 'Connection', 'X-A')), [], 'a Connection field after the one it lists still counts');
  t.same(responseHeaderList([]), []);
  const long = 'x-'.padEnd(300, 'a');
  t.same(responseHeaderList(b(long, 'v')), [long, 'v'], 'a name over 255 characters is copied');
  // Common names are relayed as constants in the spellings servers use; every other spelling
  // takes the general path, with the same outcome.
  for (const [name, hop] of [
    ['Date', false], ['date', false], ['ETag', false], ['Etag', false], ['etag', false], ['CONTENT-TYPE', false], ['Content-type', false],
    ['Keep-Alive', true], ['KEEP-ALIVE', true], ['connection', true], ['transfer-encoding', true], ['Transfer-encoding', true],
  ] as const) {
    t.same(responseHeaderList(b(name, 'v', 'X-After', '1')), hop ? ['X-After', '1'] : [name, 'v', 'X-After', '1'], `${name} ${hop ? 'dropped' : 'kept as spelled'}`);
  }
  t.same(
    responseHeaderList(b('Date', 'd', 'Connection', 'Keep-Alive, Date, content-length', 'Content-Length', '0', 'Server', 's')),
    ['Server', 's'],
    'known names that Connection lists are dropped too, in any case',
  );
  t.same(responseHeaderList(b('Connection', 'close, Server', 'Server', 's', 'Vary', 'a')), ['Vary', 'a'], 'close plus a listed name');
  t.same(responseHeaderList(b('Connection', 'keep-alive', 'Server', 's')), ['Server', 's'], 'plain keep-alive lists nothing');
  t.same(responseHeaderList(b('Contemt-Type', 'x', 'Content-Typo', 'y')), ['Contemt-Type', 'x', 'Content-Typo', 'y'], 'near misses of known names are copied as they are');
  const obj = responseHeaderObject(raw);
  t.equal(obj['content-type'], 'text/plain');
  t.same(obj['set-cookie'], ['a=1', 'b=2'], 'repeats become an array');
  t.equal(obj['connection'], 'keep-alive, X-Hop', 'the object form is unfiltered (forwardResponseHeaders filters it)');
  t.equal(Buffer.from(obj['x-latin1'] as string, 'latin1').toString('hex'), '636166e9');
  t.same(forwardResponseHeaders(obj), { 'content-type': 'text/plain', 'set-cookie': ['a=1', 'b=2'], 'x-latin1': 'caf\u00e9' });
  t.equal(Object.getPrototypeOf(responseHeaderObject(b('__proto__', 'x'))), null, 'no prototype to pollute');
});
