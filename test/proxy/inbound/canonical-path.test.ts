/** Canonical request targets only; the last one is remembered per connection. */
import t from 'tap';
import { canonicalPath } from '../../../src/proxy/inbound/filters/canonical-path.js';
import { connection, context } from './fakes.js';

t.test('canonical-path: table', async (t) => {
  const cases: [string, string | undefined][] = [
    ['/agents', '/agents'],
    ['/agents?x=1', '/agents'],
    ['/a/b/c', '/a/b/c'],
    ['/a/../admin', undefined],
    ['/a/./b', undefined],
    ['//a', undefined],
    ['/a%2fb', undefined],
    ['/a%2Fb', undefined],
    ['/%c0%ae%c0%ae/x', undefined],
  ];
  for (const [url, path] of cases) {
    const ctx = context({ conn: connection(), url });
    const out = canonicalPath.onRequest(ctx);
    if (path === undefined) {
      t.match(out, { status: 400, reason: 'path_not_canonical', error: /^Malformed request path: / }, url);
    } else {
      t.equal(out, undefined, url);
      t.equal(ctx.canonicalPath, path, url);
    }
  }
});

t.test('canonical-path: a repeated target is taken from the connection', async (t) => {
  const conn = connection();
  t.equal(canonicalPath.onRequest(context({ conn, url: '/x/y?q' })), undefined);
  t.equal(conn.canonicalUrl, '/x/y?q');
  conn.canonicalPath = '/remembered';
  const again = context({ conn, url: '/x/y?q' });
  t.equal(canonicalPath.onRequest(again), undefined);
  t.equal(again.canonicalPath, '/remembered', 'not recomputed');
  const bad = context({ conn, url: '/x/../y' });
  t.match(canonicalPath.onRequest(bad), { reason: 'path_not_canonical' });
  t.equal(conn.canonicalUrl, '/x/y?q', 'a refused target is not remembered');
});
