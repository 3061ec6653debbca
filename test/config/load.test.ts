import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { ConfigError } from '../../src/errors.js';
import { ConfigFileError, loadConfigFile, parseConfig } from '../../src/config/load.js';
import { type Problem } from '../../src/lib/yaml-reader.js';
import { normaliseSocket } from '../../src/config/identity.js';
import { INBOUND_LIMIT_DEFAULTS, OUTBOUND_LIMIT_DEFAULTS } from '../../src/lib/listener-limits.js';

/** The config from the task description, byte for byte. */
const DOCUMENTED = `identity:
  source: files                 # workload-api | files | dev
  socket: unix:///run/spire/agent.sock   # workload-api; default $SPIFFE_ENDPOINT_SOCKET
  cert: svid.pem                # files: leaf first, then intermediates
  key: svid-key.pem
  bundle: bundle.pem
  # federated: { other.org: other-bundle.pem }   # files
  # hint: internal                               # workload-api
  # startup_timeout: 30s
  # spiffe_id: spiffe://...  svid_ttl: 60s       # dev
outbound:
  listen: 127.0.0.1:15001       # non-loopback refused unless allow_non_loopback: true
  routes:
    - { name: control-plane, upstream: "https://127.0.0.1:15443", server_id: "spiffe://agent-mesh.local/control-plane" }
    # or server_trust_domain: agent-mesh.local ; optional connect_timeout, request_timeout
inbound:
  listen: 0.0.0.0:15443
  app: http://127.0.0.1:8080
  actions:
    - { method: GET, path: /agents, action: agent.list }
    - { method: GET, path: /agents/:id/status, action: agent.status }
  # request_timeout: 30s
policy: policy.yaml
admin:
  listen: 127.0.0.1:15000
log: { level: info, audit: stdout }
`;

const FILE = '/etc/attest/sidecar.yaml';
const NO_ENV = {};

function problems(text: string, env: NodeJS.ProcessEnv = NO_ENV, file = 'c.yaml'): Problem[] {
  try {
    parseConfig(text, file, env);
  } catch (err) {
    if (err instanceof ConfigFileError) return [...err.problems];
    throw err;
  }
  throw new Error('expected a ConfigFileError');
}

function only(t: Test, text: string, line: number, column: number, key: string | undefined, msg: RegExp): void {
  const ps = problems(text);
  t.equal(ps.length, 1, `one problem: ${JSON.stringify(ps)}`);
  t.match(ps[0], { file: 'c.yaml', line, column, key, message: msg });
}

const DEV = 'identity: { source: dev, spiffe_id: spiffe://td/me }\n';

t.test('the documented config loads as written', async (t) => {
  // The example lists `socket:` (a workload-api key) under `source: files`: ignored, with a warning.
  const warnings: Problem[] = [];
  const c = parseConfig(DOCUMENTED, FILE, NO_ENV, { onWarning: (w) => warnings.push(w) });
  t.strictSame(warnings, [
    {
      file: FILE,
      line: 3,
      column: 3,
      key: 'identity.socket',
      message: "ignored: 'socket' is used only with source 'workload-api', not 'files'",
    },
  ]);
  t.strictSame(c, {
    file: FILE,
    identity: {
      source: 'files',
      cert: '/etc/attest/svid.pem',
      key: '/etc/attest/svid-key.pem',
      bundle: '/etc/attest/bundle.pem',
      federated: {},
      startupTimeoutMs: 30_000,
    },
    outbound: {
      listen: { host: '127.0.0.1', port: 15001 },
      allowNonLoopback: false,
      routes: [
        {
          name: 'control-plane',
          upstream: 'https://127.0.0.1:15443',
          tls: 'spiffe',
          serverId: 'spiffe://agent-mesh.local/control-plane',
          connectTimeoutMs: 5000,
          requestTimeoutMs: 30000,
          injectHeaders: [],
        },
      ],
      limits: { ...OUTBOUND_LIMIT_DEFAULTS },
    },
    inbound: {
      listen: { host: '0.0.0.0', port: 15443 },
      app: 'http://127.0.0.1:8080',
      actions: [
        { method: 'GET', path: '/agents', action: 'agent.list' },
        { method: 'GET', path: '/agents/:id/status', action: 'agent.status' },
      ],
      requestTimeoutMs: 30000,
      limits: { ...INBOUND_LIMIT_DEFAULTS },
    },
    policy: '/etc/attest/policy.yaml',
    admin: { listen: { host: '127.0.0.1', port: 15000 } },
    drainTimeoutMs: 25_000,
    log: { level: 'info', audit: 'stdout' },
    stateDir: '/var/lib/attest-sidecar/sidecar',
    revocations: { sharedFiles: [] },
    budget: { store: 'file' },
  });
});

t.test('defaults', async (t) => {
  const c = parseConfig(`${DEV}outbound: {}\ninbound: {}\npolicy: p.yaml\n`, FILE, NO_ENV);
  t.strictSame(c.identity, { source: 'dev', spiffeId: 'spiffe://td/me', svidTtlSeconds: 60, startupTimeoutMs: 30000 });
  t.strictSame(c.outbound, { listen: { host: '127.0.0.1', port: 15001 }, allowNonLoopback: false, routes: [], limits: { ...OUTBOUND_LIMIT_DEFAULTS } });
  t.strictSame(c.inbound, {
    listen: { host: '0.0.0.0', port: 15443 },
    app: 'http://127.0.0.1:8080',
    actions: [],
    requestTimeoutMs: 30000,
    limits: { ...INBOUND_LIMIT_DEFAULTS },
  });
  t.strictSame(c.admin, { listen: { host: '127.0.0.1', port: 15000 } });
  t.strictSame(c.log, { level: 'info', audit: 'stdout' });
  const minimal = parseConfig(DEV, FILE, NO_ENV);
  t.equal(minimal.outbound, undefined);
  t.equal(minimal.inbound, undefined);
  t.equal(minimal.policy, undefined);
  const route = parseConfig(
    `${DEV}outbound:\n  routes:\n    - { name: peer, upstream: "https://10.0.0.2:15443/base", server_trust_domain: "spiffe://other.org", connect_timeout: 500ms, request_timeout: 2m }\n`,
    FILE,
    NO_ENV,
  ).outbound!.routes[0];
  t.strictSame(route, {
    name: 'peer',
    upstream: 'https://10.0.0.2:15443/base',
    tls: 'spiffe',
    serverTrustDomain: 'other.org',
    connectTimeoutMs: 500,
    requestTimeoutMs: 120000,
    injectHeaders: [],
  });
  const mapping = parseConfig(
    `${DEV}inbound:\n  actions: [{ method: post, path: "/files/*", action: f.put, resource: files, permission: write }, { method: "*", path: "/*", action: any }]\npolicy: p.yaml\n`,
    FILE,
    NO_ENV,
  ).inbound!.actions;
  t.strictSame(mapping, [
    { method: 'POST', path: '/files/*', action: 'f.put', resource: 'files', permission: 'write' },
    { method: '*', path: '/*', action: 'any' },
  ]);
});

t.test('relative paths resolve against the config file folder', async (t) => {
  const c = parseConfig(
    `identity:
  source: files
  cert: ../certs/svid.pem
  key: /abs/key.pem
  bundle: ./bundle.pem
  federated: { other.org: fed/other.pem, "spiffe://third.org": /abs/third.pem }
policy: policies/p.yaml
log: { audit: logs/audit.jsonl }
`,
    '/srv/sidecar/conf/main.yaml',
    NO_ENV,
  );
  t.strictSame(c.identity, {
    source: 'files',
    cert: '/srv/sidecar/certs/svid.pem',
    key: '/abs/key.pem',
    bundle: '/srv/sidecar/conf/bundle.pem',
    // null prototype: trust domain names are user keys
    federated: Object.assign(Object.create(null), { 'other.org': '/srv/sidecar/conf/fed/other.pem', 'third.org': '/abs/third.pem' }),
    startupTimeoutMs: 30_000,
  });
  t.equal(c.policy, '/srv/sidecar/conf/policies/p.yaml');
  t.equal(c.log.audit, '/srv/sidecar/conf/logs/audit.jsonl');
  const relFile = parseConfig(`${DEV}policy: p.yaml\n`, 'conf/x.yaml', NO_ENV);
  t.equal(relFile.file, path.resolve('conf/x.yaml'));
  t.equal(relFile.policy, path.resolve('conf/p.yaml'));
  const inline = parseConfig(`${DEV}policy: p.yaml\n`, '<inline>', NO_ENV);
  t.equal(inline.file, '<inline>');
  t.equal(inline.policy, path.resolve(process.cwd(), 'p.yaml'));
});

t.test('workload API socket: config, SPIFFE_ENDPOINT_SOCKET default, forms', async (t) => {
  const wl = (extra = '') => `identity:\n  source: workload-api\n${extra}`;
  const env = { SPIFFE_ENDPOINT_SOCKET: 'unix:///run/spire/sockets/agent.sock' };
  t.strictSame(parseConfig(wl(), FILE, env).identity, {
    source: 'workload-api',
    socket: 'unix:///run/spire/sockets/agent.sock',
    startupTimeoutMs: 30000,
  });
  t.strictSame(parseConfig(wl('  socket: unix:///other.sock\n  hint: internal\n  startup_timeout: 5s\n'), FILE, env).identity, {
    source: 'workload-api',
    socket: 'unix:///other.sock',
    hint: 'internal',
    startupTimeoutMs: 5000,
  });
  t.equal((parseConfig(wl('  socket: agent.sock\n'), FILE, NO_ENV).identity as { socket: string }).socket, 'unix:///etc/attest/agent.sock');
  t.match(problems(wl()), [{ line: 2, column: 3, key: 'identity.socket', message: /required for source 'workload-api' \(or set SPIFFE_ENDPOINT_SOCKET\)/ }]);
  t.match(problems(wl(), { SPIFFE_ENDPOINT_SOCKET: 'tcp://localhost:1' }), [
    { line: 2, column: 3, key: 'identity.socket', message: /from SPIFFE_ENDPOINT_SOCKET: .*exactly tcp:\/\/IP:port/ },
  ]);
  t.match(problems(wl('  socket: "unix://host/agent.sock"\n')), [{ line: 3, column: 11, key: 'identity.socket', message: /has an authority/ }]);

  const forms: [string, string | RegExp][] = [
    ['unix:///a/b.sock', 'unix:///a/b.sock'],
    ['unix:/a/b.sock', 'unix:///a/b.sock'],
    ['/a/b.sock', 'unix:///a/b.sock'],
    ['tcp://127.0.0.1:8000', 'tcp://127.0.0.1:8000'],
    ['tcp://[::1]:8000', 'tcp://[::1]:8000'],
    ['tcp://127.0.0.1:8000/foo', /exactly tcp:\/\/IP:port/],
    ['tcp://127.0.0.1', /exactly tcp:\/\/IP:port/],
    ['tcp://example.com:80', /exactly tcp:\/\/IP:port/],
    ['unix:relative.sock', /must be absolute/],
    ['http://x', /unsupported socket scheme/],
  ];
  for (const [v, want] of forms) {
    const r = normaliseSocket(v, undefined);
    if (typeof want === 'string') t.strictSame(r, { ok: true, value: want }, v);
    else t.match(r, { ok: false, error: want }, v);
  }
  t.match(normaliseSocket('rel.sock', undefined), { ok: false, error: /unix:\/\/\/absolute/ });
});

t.test('non-loopback outbound listen is refused unless allowed', async (t) => {
  only(t, `${DEV}outbound:\n  listen: 0.0.0.0:15001\n`, 3, 11, 'outbound.listen', /'0\.0\.0\.0' is not a loopback address.*could act as this agent.*allow_non_loopback: true/s);
  only(t, `${DEV}outbound:\n  listen: "[::]:15001"\n`, 3, 11, 'outbound.listen', /not a loopback address/);
  const c = parseConfig(`${DEV}outbound:\n  listen: 0.0.0.0:15001\n  allow_non_loopback: true\n`, FILE, NO_ENV);
  t.strictSame(c.outbound!.listen, { host: '0.0.0.0', port: 15001 });
  t.equal(c.outbound!.allowNonLoopback, true);
  for (const l of ['"[::1]:1"', 'localhost:1', '127.0.0.2:0']) {
    t.ok(parseConfig(`${DEV}outbound:\n  listen: ${l}\n`, FILE, NO_ENV).outbound, l);
  }
});

t.test('outbound caller token and browser opt-out', async (t) => {
  const c = parseConfig(
    `${DEV}outbound:\n  caller_token_file: secrets/caller-token\n  routes:\n    - { name: ui, upstream: "https://x", server_id: "spiffe://td/b", allow_browser_requests: true }\n    - { name: api, upstream: "https://y", server_id: "spiffe://td/c" }\n`,
    FILE,
    NO_ENV,
  ).outbound!;
  t.equal(c.callerTokenFile, path.resolve(path.dirname(FILE), 'secrets/caller-token'), 'relative to the config file');
  t.equal(c.routes[0]!.allowBrowserRequests, true);
  t.equal(c.routes[1]!.allowBrowserRequests, undefined, 'browser requests are refused by default');
  const bad = () => parseConfig(`${DEV}outbound:\n  routes:\n    - { name: a, upstream: "https://x", server_id: "spiffe://td/b", allow_browser_requests: maybe }\n`, FILE, NO_ENV);
  t.throws(bad, /allow_browser_requests/);
});

t.test('each error names file:line:column and key', async (t) => {
  const route = (r: string) => `${DEV}outbound:\n  routes:\n    - ${r}\n`;
  const cases: [string, string, number, number, string | undefined, RegExp][] = [
    ['missing identity', 'log: {}\n', 1, 1, undefined, /missing required key 'identity'/],
    ['unknown top-level key', `${DEV}polcy: p.yaml\n`, 2, 1, 'polcy', /unknown key 'polcy' \(did you mean 'policy'\?\)/],
    ['identity source', 'identity: { source: spire }\n', 1, 21, 'identity.source', /must be one of workload-api, files, dev; got 'spire'/],
    ['files without key', 'identity:\n  source: files\n  cert: c.pem\n  bundle: b.pem\n', 2, 3, 'identity.key', /is required for source 'files'/],
    ['dev without spiffe_id', 'identity: { source: dev }\n', 1, 11, 'identity.spiffe_id', /is required for source 'dev'/],
    ['dev svid_ttl', 'identity: { source: dev, spiffe_id: spiffe://td/a, svid_ttl: 500ms }\n', 1, 62, 'identity.svid_ttl', /at least 1s/],
    ['federated trust domain', 'identity: { source: files, cert: c, key: k, bundle: b, federated: { Bad.Org: f.pem } }\n', 1, 69, 'identity.federated.Bad.Org', /invalid trust domain/],
    ['startup timeout', 'identity: { source: dev, spiffe_id: spiffe://td/a, startup_timeout: soon }\n', 1, 69, 'identity.startup_timeout', /invalid duration 'soon'/],
    ['route missing upstream', route('{ name: a, server_id: "spiffe://td/b" }'), 4, 7, 'outbound.routes[0]', /missing required key 'upstream'/],
    ['route upstream http', route('{ name: a, upstream: "http://x", server_id: "spiffe://td/b" }'), 4, 28, 'outbound.routes[0].upstream', /must be an https URL, got 'http:\/\/x'/],
    ['route upstream credentials', route('{ name: a, upstream: "https://u:p@x", server_id: "spiffe://td/b" }'), 4, 28, 'outbound.routes[0].upstream', /credentials/],
    ['route name', route('{ name: "a.b", upstream: "https://x", server_id: "spiffe://td/b" }'), 4, 15, 'outbound.routes[0].name', /not a valid route name/],
    ['route bad server_id', route('{ name: a, upstream: "https://x", server_id: "spiffe://td/" }'), 4, 52, 'outbound.routes[0].server_id', /invalid SPIFFE ID: path cannot have a trailing slash/],
    ['route both server keys', route('{ name: a, upstream: "https://x", server_id: "spiffe://td/b", server_trust_domain: td }'), 4, 69, 'outbound.routes[0].server_trust_domain', /exactly one of/],
    ['route neither server key', route('{ name: a, upstream: "https://x" }'), 4, 7, 'outbound.routes[0]', /needs 'server_id'.*or 'server_trust_domain'/],
    ['route timeout', route('{ name: a, upstream: "https://x", server_id: "spiffe://td/b", connect_timeout: 0 }'), 4, 86, 'outbound.routes[0].connect_timeout', /greater than zero/],
    ['duplicate route', `${DEV}outbound:\n  routes:\n    - { name: a, upstream: "https://x", server_id: "spiffe://td/b" }\n    - { name: a, upstream: "https://y", server_id: "spiffe://td/c" }\n`, 5, 7, 'outbound.routes[1]', /duplicate route name 'a' \(first at line 4\)/],
    ['listen syntax', `${DEV}admin: { listen: "15000" }\n`, 2, 18, 'admin.listen', /expected "host:port"/],
    ['inbound without policy', `${DEV}inbound: {}\n`, 2, 1, 'policy', /is required when 'inbound' is configured/],
    ['inbound app', `${DEV}inbound: { app: "http://127.0.0.1:8080/api" }\npolicy: p\n`, 2, 17, 'inbound.app', /must not have a path/],
    ['inbound app over https', `${DEV}inbound: { app: "https://127.0.0.1:8443" }\npolicy: p\n`, 2, 17, 'inbound.app', /must be an http URL/],
    ['action missing action', `${DEV}inbound:\n  actions: [{ method: GET, path: /a }]\npolicy: p\n`, 3, 13, 'inbound.actions[0]', /missing required key 'action'/],
    ['action bad path', `${DEV}inbound:\n  actions: [{ method: GET, path: "/a/%2e%2e/b", action: x }]\npolicy: p\n`, 3, 34, 'inbound.actions[0].path', /encoded '\.'/],
    ['action bad method', `${DEV}inbound:\n  actions: [{ method: "GE T", path: /a, action: x }]\npolicy: p\n`, 3, 23, 'inbound.actions[0].method', /not an HTTP method/],
    ['unreachable action', `${DEV}inbound:\n  actions:\n    - { method: GET, path: /a, action: x }\n    - { method: get, path: /a, action: y }\npolicy: p\n`, 5, 7, 'inbound.actions[1]', /GET \/a is already mapped at line 4; this entry could never match/],
    ['log level', `${DEV}log: { level: verbose }\n`, 2, 15, 'log.level', /must be one of trace, debug, info, warn, error, fatal, silent/],
    ['outbound not a map', `${DEV}outbound: [a]\n`, 2, 11, 'outbound', /must be a mapping, got a list/],
    ['two documents', `${DEV}---\n${DEV}`, 3, 1, undefined, /one YAML document/],
    ['YAML syntax', 'identity: { source: dev\n', 2, 1, undefined, /flow|indented|\}/i],
  ];
  for (const [name, text, line, column, key, msg] of cases) t.test(name, async (t) => only(t, text, line, column, key, msg));
});

t.test('all problems are reported in one ConfigError, in file order', async (t) => {
  let err: unknown;
  try {
    parseConfig(`identity: { source: dev }\noutbound: { listen: 0.0.0.0:1, routez: [] }\nlog: { level: loud }\n`, 'dir/c.yaml', NO_ENV);
  } catch (e) {
    err = e;
  }
  t.ok(err instanceof ConfigFileError && err instanceof ConfigError);
  const e = err as ConfigFileError;
  t.equal(e.reason, 'config_invalid');
  t.strictSame(e.problems.map((p) => `${p.line}:${p.column} ${p.key}`), [
    '1:11 identity.spiffe_id',
    '2:21 outbound.listen',
    '2:32 outbound.routez',
    '3:15 log.level',
  ]);
  t.match(e, { file: 'dir/c.yaml', line: 1, column: 11, key: 'identity.spiffe_id' });
  t.match(e.message, /^4 problems:\ndir\/c\.yaml:1:11: identity\.spiffe_id: is required for source 'dev'\n/);
  t.match(e.message, /dir\/c\.yaml:2:32: outbound\.routez: unknown key 'routez' \(did you mean 'routes'\?\)/);
});

t.test('loadConfigFile', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'sidecar.yaml');
  writeFileSync(file, `${DEV}policy: policy.yaml\n`);
  const c = loadConfigFile(file, NO_ENV);
  t.equal(c.file, file);
  t.equal(c.policy, path.join(dir, 'policy.yaml'));
  try {
    loadConfigFile(path.join(dir, 'missing.yaml'));
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof ConfigFileError);
    t.match((err as ConfigFileError).problems[0], { line: 0, message: /cannot read config file: ENOENT/ });
  }
  writeFileSync(file, '# nothing yet\n');
  t.throws(() => loadConfigFile(file, NO_ENV), /is empty/);
});

t.test('max_request_headers: set per direction, within 16..500', async (t) => {
  const c = parseConfig(`${DEV}outbound: { max_request_headers: 40 }\ninbound: { max_request_headers: 200 }\npolicy: p.yaml\n`, FILE, NO_ENV);
  t.equal(c.outbound!.maxRequestHeaders, 40);
  t.equal(c.inbound!.maxRequestHeaders, 200);
  t.match(problems(`${DEV}inbound: { max_request_headers: 1000 }\npolicy: p.yaml\n`), [{ key: 'inbound.max_request_headers', message: /must be at most 500, got 1000/ }]);
  t.match(problems(`${DEV}inbound: { max_request_headers: 8 }\npolicy: p.yaml\n`), [{ key: 'inbound.max_request_headers', message: /must be at least 16, got 8/ }]);
  t.match(problems(`${DEV}outbound: { max_request_headers: many }\n`), [{ key: 'outbound.max_request_headers', message: /must be an integer/ }]);
});
