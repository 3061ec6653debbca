import t from 'tap';
import { forwardRequestHeaders, forwardResponseHeaders, isBrowserRequest, xfccValue } from '../../src/proxy/headers.js';

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
    'Host', 'control-plane', 'User-Agent', 'agent/1.0', 'Content-Length', '2', 'x-spiffe-id', 'spiffe://good/a',
  ]);
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
  t.equal(xfccValue('spiffe://a/b', 'ab'.repeat(32), 'spiffe://a/c'), `By=spiffe://a/b;Hash=${'ab'.repeat(32)};URI=spiffe://a/c`);
});
