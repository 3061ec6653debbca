// Every case of shared/conformance/spiffe/ID_CASES.md (go-spiffe v2 spiffeid tests), plus
// the SPIFFE-ID standard's length limits. The cases are restated facts, so this file does
// not need the conformance folder at run time.
import t from 'tap';
import {
  joinPathSegments,
  parseSpiffeId,
  parseTrustDomain,
  SpiffeId,
  SpiffeIdError,
  SpiffeIdErrorKind,
  spiffeIdFromPath,
  spiffeIdFromSegments,
  TrustDomain,
  validatePathSegment,
} from '../../src/spiffe/id.js';

const TD_CHARS = new Set('abcdefghijklmnopqrstuvwxyz0123456789.-_');
const PATH_CHARS = new Set('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_');

function kindOf(fn: () => unknown): SpiffeIdErrorKind | 'OK' {
  try {
    fn();
    return 'OK';
  } catch (err) {
    if (err instanceof SpiffeIdError) {
      if (err.reason !== 'spiffe_id_invalid') throw new Error(`wrong reason ${err.reason}`);
      return err.kind;
    }
    throw err;
  }
}

const td = parseTrustDomain('trustdomain');

t.test('FromString cases', async (t) => {
  const cases: [string, SpiffeIdErrorKind | 'OK', string?][] = [
    ['', 'EMPTY'],
    ['spiffe://trustdomain', 'OK', ''],
    ['spiffe://trustdomain/path', 'OK', '/path'],
    ['s', 'SCHEME'],
    ['spiffe:/', 'SCHEME'],
    ['Spiffe://', 'SCHEME'],
    ['spiffe://', 'TD_MISSING'],
    ['spiffe:///', 'TD_MISSING'],
    ['spiffe://trustdomain/', 'TRAILING_SLASH'],
    ['spiffe://trustdomain//', 'EMPTY_SEGMENT'],
    ['spiffe://trustdomain//path', 'EMPTY_SEGMENT'],
    ['spiffe://trustdomain/path/', 'TRAILING_SLASH'],
    ['spiffe://trustdomain/.', 'DOT_SEGMENT'],
    ['spiffe://trustdomain/./path', 'DOT_SEGMENT'],
    ['spiffe://trustdomain/path/./other', 'DOT_SEGMENT'],
    ['spiffe://trustdomain/path/..', 'DOT_SEGMENT'],
    ['spiffe://trustdomain/..', 'DOT_SEGMENT'],
    ['spiffe://trustdomain/../path', 'DOT_SEGMENT'],
    ['spiffe://trustdomain/path/../other', 'DOT_SEGMENT'],
    ['spiffe://trustdomain/.path', 'OK', '/.path'],
    ['spiffe://trustdomain/..path', 'OK', '/..path'],
    ['spiffe://trustdomain/...', 'OK', '/...'],
    ['spiffe://%F0%9F%A4%AF/path', 'TD_CHAR'],
    ['spiffe://trustdomain/%F0%9F%A4%AF', 'PATH_CHAR'],
    ['spiffe://%62%61%64/path', 'TD_CHAR'],
    ['spiffe://trustdomain/%62%61%64', 'PATH_CHAR'],
  ];
  for (const [input, want, path] of cases) {
    t.equal(kindOf(() => parseSpiffeId(input)), want, JSON.stringify(input));
    if (want === 'OK') {
      const id = parseSpiffeId(input);
      t.equal(id.trustDomain.name, 'trustdomain');
      t.equal(id.path, path);
      t.equal(id.toString(), input);
    }
  }
  // go-spiffe's message text is kept (the input is appended, quoted)
  t.throws(() => parseSpiffeId('spiffe://trustdomain/path/'), { message: /^path cannot have a trailing slash: "spiffe:\/\/trustdomain\/path\/"$/ });
});

t.test('FromString: every byte value in the trust domain and in the path', async (t) => {
  let tdFailures = 0;
  let pathFailures = 0;
  for (let b = 0; b <= 0xff; b++) {
    if (b === 0x2f) continue; // '/'
    const c = String.fromCharCode(b);
    const tdWant = TD_CHARS.has(c) ? 'OK' : 'TD_CHAR';
    if (kindOf(() => parseSpiffeId(`spiffe://trustdomain${c}/path`)) !== tdWant) tdFailures++;
    const pathWant = PATH_CHARS.has(c) ? 'OK' : 'PATH_CHAR';
    if (kindOf(() => parseSpiffeId(`spiffe://trustdomain/path${c}`)) !== pathWant) pathFailures++;
  }
  t.equal(tdFailures, 0, 'trust domain byte loop');
  t.equal(pathFailures, 0, 'path byte loop');
  // spot checks the loops rely on
  t.equal(kindOf(() => parseSpiffeId('spiffe://trustdomainA/path')), 'TD_CHAR', 'uppercase in trust domain');
  t.equal(kindOf(() => parseSpiffeId('spiffe://trustdomain:443/path')), 'TD_CHAR', 'port');
  t.equal(kindOf(() => parseSpiffeId('spiffe://user@trustdomain/path')), 'TD_CHAR', 'userinfo');
  t.equal(kindOf(() => parseSpiffeId('spiffe://trustdomain/pathA')), 'OK', 'uppercase in path');
  t.equal(kindOf(() => parseSpiffeId('spiffe://trustdomain/path?q')), 'PATH_CHAR', 'query');
  t.equal(kindOf(() => parseSpiffeId('spiffe://trustdomain/path#f')), 'PATH_CHAR', 'fragment');
  t.equal(kindOf(() => parseSpiffeId('spiffe://trustdomain/p\u00e9')), 'PATH_CHAR', 'non-ASCII');
});

t.test('FromURI-like cases (raw URI strings as found in a URI SAN)', async (t) => {
  t.ok(parseSpiffeId('spiffe://trustdomain').equals(spiffeIdFromPath(td, '')));
  t.ok(parseSpiffeId('spiffe://trustdomain/path').equals(spiffeIdFromPath(td, '/path')));
  t.equal(kindOf(() => parseSpiffeId('')), 'EMPTY', 'empty URL');
  t.equal(kindOf(() => parseSpiffeId('SPIFFE://trustdomain')), 'SCHEME', 'scheme SPIFFE');
  t.equal(kindOf(() => parseSpiffeId('spiffe://trust$domain')), 'TD_CHAR');
  t.equal(kindOf(() => parseSpiffeId('spiffe://trustdomain/path$')), 'PATH_CHAR');
  // non-string input from untrusted JSON never crashes
  t.equal(kindOf(() => parseSpiffeId(undefined as unknown as string)), 'EMPTY');
});

t.test('FromSegments', async (t) => {
  t.equal(spiffeIdFromSegments(td).path, '');
  t.equal(spiffeIdFromSegments(td, ...[]).toString(), 'spiffe://trustdomain');
  t.equal(spiffeIdFromSegments(td, 'foo').path, '/foo');
  t.equal(spiffeIdFromSegments(td, 'foo', 'bar').toString(), 'spiffe://trustdomain/foo/bar');
  t.equal(kindOf(() => spiffeIdFromSegments(td, '')), 'EMPTY_SEGMENT');
  t.equal(kindOf(() => spiffeIdFromSegments(td, '/')), 'PATH_CHAR');
  t.equal(kindOf(() => spiffeIdFromSegments(td, '/foo')), 'PATH_CHAR');
  t.equal(kindOf(() => spiffeIdFromSegments(td, '$')), 'PATH_CHAR');
});

t.test('FromPath', async (t) => {
  t.equal(spiffeIdFromPath(td, '/foo').toString(), 'spiffe://trustdomain/foo');
  t.equal(spiffeIdFromPath(td, '').toString(), 'spiffe://trustdomain');
  t.equal(kindOf(() => spiffeIdFromPath(td, 'foo')), 'NO_LEADING_SLASH');
  t.equal(kindOf(() => spiffeIdFromPath(td, '/')), 'TRAILING_SLASH');
});

t.test('replace / append path and segments', async (t) => {
  for (const start of ['', '/path']) {
    const id = spiffeIdFromPath(td, start);
    t.equal(id.replacePath('/foo').path, '/foo');
    t.equal(kindOf(() => id.replacePath('foo')), 'NO_LEADING_SLASH');
    t.equal(kindOf(() => id.replacePath('/')), 'TRAILING_SLASH');
    t.equal(id.appendPath('/foo').path, `${start}/foo`);
    t.equal(kindOf(() => id.appendPath('foo')), 'NO_LEADING_SLASH');
    t.equal(kindOf(() => id.appendPath('/')), 'TRAILING_SLASH');
    t.equal(id.replaceSegments('foo').path, '/foo');
    t.equal(kindOf(() => id.replaceSegments('')), 'EMPTY_SEGMENT');
    t.equal(kindOf(() => id.replaceSegments('/foo')), 'PATH_CHAR');
    t.equal(id.appendSegments('foo').path, `${start}/foo`);
    t.equal(id.path, start, 'original ID is unchanged');
  }
  const zero = SpiffeId.zero();
  t.equal(zero.toString(), '');
  t.notOk(zero.memberOf(TrustDomain.zero()), 'the zero ID is a member of nothing');
  const zeroCases: [() => unknown, string][] = [
    [() => zero.replacePath('/foo'), 'cannot replace path on a zero ID value'],
    [() => zero.appendPath('/foo'), 'cannot append path on a zero ID value'],
    [() => zero.replaceSegments('foo'), 'cannot replace path segments on a zero ID value'],
    [() => zero.appendSegments('foo'), 'cannot append path segments on a zero ID value'],
  ];
  for (const [fn, message] of zeroCases) {
    t.equal(kindOf(fn), 'ZERO_ID');
    t.throws(fn, { message });
  }
});

t.test('ValidatePathSegment / JoinPathSegments', async (t) => {
  t.equal(kindOf(() => validatePathSegment('')), 'EMPTY_SEGMENT');
  t.equal(kindOf(() => validatePathSegment('.')), 'DOT_SEGMENT');
  t.equal(kindOf(() => validatePathSegment('..')), 'DOT_SEGMENT');
  t.equal(kindOf(() => validatePathSegment('/')), 'PATH_CHAR');
  t.equal(kindOf(() => validatePathSegment('a')), 'OK');
  t.equal(joinPathSegments('a'), '/a');
  t.equal(joinPathSegments('a', 'b'), '/a/b');
  t.equal(joinPathSegments(), '');
  t.equal(kindOf(() => joinPathSegments('')), 'EMPTY_SEGMENT');
  t.equal(kindOf(() => joinPathSegments('.')), 'DOT_SEGMENT');
  t.equal(kindOf(() => joinPathSegments('..')), 'DOT_SEGMENT');
  t.equal(kindOf(() => joinPathSegments('/')), 'PATH_CHAR');
});

t.test('TrustDomainFromString', async (t) => {
  const cases: [string, SpiffeIdErrorKind | 'OK'][] = [
    ['', 'TD_MISSING'],
    ['trustdomain', 'OK'],
    ['spiffe://trustdomain', 'OK'],
    ['spiffe://trustdomain/path', 'OK'],
    ['spiffe:/trustdomain/path', 'SCHEME'],
    ['spiffe://', 'TD_MISSING'],
    ['spiffe:///path', 'TD_MISSING'],
    ['spiffe://trustdomain/', 'TRAILING_SLASH'],
    ['spiffe://trustdomain/path/', 'TRAILING_SLASH'],
    ['spiffe://%F0%9F%A4%AF/path', 'TD_CHAR'],
    ['spiffe://trustdomain/%F0%9F%A4%AF', 'PATH_CHAR'],
    // TrustDomainFromURI equivalents on raw strings
    ['SPIFFE://trustdomain', 'SCHEME'],
    ['spiffe://trust$domain', 'TD_CHAR'],
    ['spiffe://trustdomain/path$', 'PATH_CHAR'],
    ['BAD', 'TD_CHAR'],
  ];
  for (const [input, want] of cases) {
    t.equal(kindOf(() => parseTrustDomain(input)), want, JSON.stringify(input));
    if (want === 'OK') t.equal(parseTrustDomain(input).name, 'trustdomain');
  }
  let failures = 0;
  for (let b = 0; b <= 0xff; b++) {
    const c = String.fromCharCode(b);
    const want = TD_CHARS.has(c) ? 'OK' : 'TD_CHAR';
    if (kindOf(() => parseTrustDomain(`trustdomain${c}`)) !== want) failures++;
    if (want === 'OK' && !parseTrustDomain(`spiffe://trustdomain${c}`).equals(parseTrustDomain(`trustdomain${c}`))) failures++;
  }
  t.equal(failures, 0, 'every byte value after "trustdomain"');
});

t.test('trust domain ID string, equality, ordering, membership', async (t) => {
  for (const input of ['trustdomain', 'spiffe://trustdomain', 'spiffe://trustdomain/path']) {
    t.equal(parseTrustDomain(input).idString(), 'spiffe://trustdomain');
    t.equal(parseTrustDomain(input).toString(), 'trustdomain');
  }
  t.equal(TrustDomain.zero().idString(), '');
  t.ok(parseTrustDomain('a').compare(parseTrustDomain('b')) < 0, '"a" before "b"');
  t.equal(parseTrustDomain('b').compare(parseTrustDomain('a')), 1);
  const id = parseSpiffeId('spiffe://trustdomain/workload');
  t.ok(id.memberOf(td));
  t.notOk(id.memberOf(parseTrustDomain('other')));
  t.ok(id.equals(parseSpiffeId('spiffe://trustdomain/workload')));
  t.notOk(id.equals(parseSpiffeId('spiffe://trustdomain/Workload')), 'paths are case-sensitive');
  t.same(id.segments(), ['workload']);
  t.equal(td.id().toString(), 'spiffe://trustdomain');
  t.equal(JSON.stringify({ id, td }), '{"id":"spiffe://trustdomain/workload","td":"trustdomain"}');
});

t.test('length limits (SPIFFE-ID standard)', async (t) => {
  const td255 = 'a'.repeat(255);
  t.equal(parseTrustDomain(td255).name.length, 255);
  t.equal(kindOf(() => parseTrustDomain('a'.repeat(256))), 'TD_TOO_LONG');
  t.equal(kindOf(() => parseSpiffeId(`spiffe://${'a'.repeat(256)}/x`)), 'TD_TOO_LONG');
  t.throws(() => parseTrustDomain('a'.repeat(256)), { message: /longer than 255 bytes/ });

  const prefix = `spiffe://${td255}`;
  const maxPath = '/' + 'p'.repeat(2048 - prefix.length - 1);
  t.equal(parseSpiffeId(prefix + maxPath).toString().length, 2048, 'exactly 2048 bytes is fine');
  t.equal(kindOf(() => parseSpiffeId(prefix + maxPath + 'p')), 'TOO_LONG');
  t.throws(() => parseSpiffeId(prefix + maxPath + 'p'), { message: /longer than 2048 bytes/ });
  const big = parseTrustDomain(td255);
  t.equal(kindOf(() => spiffeIdFromPath(big, maxPath + 'p')), 'TOO_LONG');
  t.equal(kindOf(() => spiffeIdFromPath(big, maxPath).appendPath('/x')), 'TOO_LONG');
  t.equal(kindOf(() => spiffeIdFromSegments(big, 'p'.repeat(2048 - prefix.length))), 'TOO_LONG');
  // a huge input is rejected without scanning it all, and the message is truncated
  const huge = `spiffe://td/${'x'.repeat(1_000_000)}`;
  t.equal(kindOf(() => parseSpiffeId(huge)), 'TOO_LONG');
  try {
    parseSpiffeId(huge);
  } catch (err) {
    t.ok((err as Error).message.length < 400, 'message does not echo the whole input');
  }
});
