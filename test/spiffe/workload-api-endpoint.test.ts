/**
 * Endpoint URI validation (SPIFFE Workload Endpoint rules) and conformance of proto/workload.proto
 * with the third-party facts in ../shared/conformance/workload-api/FIELDS.md (service name,
 * method paths, streaming, every message field's name, type and number).
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import {
  parseWorkloadEndpoint,
  resolveWorkloadEndpoint,
  SPIFFE_ENDPOINT_ENV,
} from '../../src/spiffe/workload-api/endpoint.js';
import {
  fromStructMessage,
  toStructMessage,
  workloadApiDefinition,
  workloadApiService,
} from '../../src/spiffe/workload-api/proto.js';
import { conformance } from '../helpers/paths.js';

const withReason = (reason: string) => ({ message: /./, reason });

t.test('valid endpoints', async (t) => {
  t.same(parseWorkloadEndpoint('unix:///run/spire/agent.sock'), {
    kind: 'unix',
    uri: 'unix:///run/spire/agent.sock',
    path: '/run/spire/agent.sock',
    grpcTarget: 'unix:///run/spire/agent.sock',
  });
  t.equal(parseWorkloadEndpoint('unix:/tmp/a.sock').kind, 'unix', 'no-authority short form');
  t.equal((parseWorkloadEndpoint('unix:///tmp/a%20b.sock') as { path: string }).path, '/tmp/a b.sock', 'percent-decoded path');
  t.same(parseWorkloadEndpoint('tcp://127.0.0.1:8000'), {
    kind: 'tcp',
    uri: 'tcp://127.0.0.1:8000',
    host: '127.0.0.1',
    port: 8000,
    grpcTarget: 'ipv4:127.0.0.1:8000',
  });
  t.equal(parseWorkloadEndpoint('tcp://[::1]:9').grpcTarget, 'ipv6:[::1]:9');
});

t.test('invalid endpoints are refused with a clear reason', async (t) => {
  const cases: [string, RegExp][] = [
    ['', /empty/],
    ['/tmp/agent.sock', /not a URI/],
    ['http://127.0.0.1:80', /scheme must be unix or tcp/],
    ['unix://host/tmp/agent.sock', /authority/],
    ['unix:relative/agent.sock', /absolute path/],
    ['unix:///', /socket file/],
    ['unix:///tmp/agent.sock?x=1', /query/],
    ['unix:///tmp/agent.sock#frag', /fragment/],
    ['unix://user@/tmp/agent.sock', /not a URI/],
    ['unix://user@host/tmp/agent.sock', /user info/],
    ['tcp://127.0.0.1:8000/foo', /path/],
    ['tcp://127.0.0.1:8000/', /path/],
    ['tcp://localhost:8000', /IP address/],
    ['tcp://127.0.0.1', /port/],
    ['tcp://127.0.0.1:0', /port/],
    ['tcp://user:pw@127.0.0.1:80', /user info/],
    ['tcp://127.0.0.1:80 ', /whitespace/],
  ];
  for (const [uri, message] of cases) {
    t.throws(() => parseWorkloadEndpoint(uri), { reason: 'workload_endpoint_invalid', message }, JSON.stringify(uri));
  }
});

t.test('SPIFFE_ENDPOINT_SOCKET fallback', async (t) => {
  t.equal(resolveWorkloadEndpoint(undefined, { [SPIFFE_ENDPOINT_ENV]: 'unix:///tmp/env.sock' }).uri, 'unix:///tmp/env.sock');
  t.equal(resolveWorkloadEndpoint('unix:///tmp/cfg.sock', { [SPIFFE_ENDPOINT_ENV]: 'unix:///tmp/env.sock' }).uri, 'unix:///tmp/cfg.sock', 'config wins');
  t.throws(() => resolveWorkloadEndpoint(undefined, {}), withReason('workload_endpoint_missing'));
  t.throws(() => resolveWorkloadEndpoint(undefined, { [SPIFFE_ENDPOINT_ENV]: 'tcp://x:1' }), withReason('workload_endpoint_invalid'));
});

t.test('google.protobuf.Struct round trip (ValidateJWTSVID claims)', async (t) => {
  const claims = { sub: 'spiffe://td/x', aud: ['a', 'b'], exp: 1700000000, nested: { ok: true, none: null } };
  t.same(fromStructMessage(toStructMessage(claims)), claims);
  // Through the real protobuf encoding, not just the JS shapes.
  const def = workloadApiService().service['ValidateJWTSVID']!;
  const wire = def.responseSerialize({ spiffe_id: 'spiffe://td/x', claims: toStructMessage(claims) });
  const back = def.responseDeserialize(wire) as { claims: Parameters<typeof fromStructMessage>[0] };
  t.same(fromStructMessage(back.claims), claims);
});

// ---- proto/workload.proto against FIELDS.md ----

interface DescField {
  name: string;
  number: number;
  label: string;
  type: string;
  typeName: string;
}
interface DescMessage {
  name: string;
  field: DescField[];
  nestedType: DescMessage[];
  options?: { mapEntry?: boolean } | null;
}

const SCALARS: Record<string, string> = { TYPE_STRING: 'string', TYPE_BYTES: 'bytes', TYPE_BOOL: 'bool', TYPE_INT64: 'int64', TYPE_INT32: 'int32' };

function fieldType(f: DescField, owner: DescMessage): string {
  const base = f.type === 'TYPE_MESSAGE' ? f.typeName : (SCALARS[f.type] ?? f.type);
  const entry = owner.nestedType.find((n) => n.name === f.typeName && n.options?.mapEntry);
  if (entry) {
    const k = entry.field.find((x) => x.number === 1)!;
    const v = entry.field.find((x) => x.number === 2)!;
    return `map<${fieldType(k, entry)}, ${fieldType(v, entry)}>`;
  }
  return f.label === 'LABEL_REPEATED' ? `repeated ${base}` : base;
}

t.test('proto matches FIELDS.md', async (t) => {
  const c = conformance('workload-api');
  if ('skip' in c) return void t.skip(c.skip, () => {});
  const md = readFileSync(path.join(c.dir, 'FIELDS.md'), 'utf8');
  const def = workloadApiDefinition() as unknown as Record<string, { type?: DescMessage }>;

  // Messages: "**Name**" headings, then "* `field` — type — number — ..." bullets.
  const expected = new Map<string, string[]>();
  let current: string | undefined;
  for (const line of md.split('\n')) {
    const head = /^\*\*([A-Za-z0-9]+)\*\*/.exec(line);
    if (head && def[head[1]!] !== undefined) {
      current = head[1]!;
      expected.set(current, []);
      continue;
    }
    const bullet = /^\* `([a-z0-9_]+)` — ([^—]+?) — (\d+) —/.exec(line);
    if (bullet && current) expected.get(current)!.push(`${bullet[1]} ${bullet[2]!.trim()} = ${bullet[3]}`);
    else if (line.startsWith('## ') && current) current = undefined;
  }
  t.equal(expected.size, 17, 'FIELDS.md describes 17 messages');
  const ours = Object.keys(def).filter((k) => !k.startsWith('google.') && k !== 'SpiffeWorkloadAPI');
  t.same(ours.sort(), [...expected.keys()].sort(), 'same message set');
  for (const [name, fields] of expected) {
    const msg = def[name]!.type!;
    const actual = msg.field.map((f) => `${f.name} ${fieldType(f, msg)} = ${f.number}`);
    t.same(actual.sort(), [...fields].sort(), `${name} fields`);
  }

  // RPC table: "| Rpc | Request | Response | streaming |".
  const service = workloadApiService().service;
  const rpcs = [...md.matchAll(/^\| (\w+) \| (\w+) \| (\w+) \| ([a-z-]+)/gm)].filter((m) => m[1] !== 'RPC');
  t.equal(rpcs.length, 7, 'FIELDS.md lists 7 RPCs');
  t.same(Object.keys(service), rpcs.map((m) => m[1]), 'same RPCs in the same order');
  for (const [, rpc, req, resp, mode] of rpcs) {
    const m = service[rpc!]!;
    t.equal(m.path, `/SpiffeWorkloadAPI/${rpc}`, `${rpc} path (no package)`);
    t.equal(m.requestStream, false);
    t.equal(m.responseStream, mode === 'server-streaming', `${rpc} is ${mode}`);
    const d = workloadApiDefinition()['SpiffeWorkloadAPI'] as unknown as Record<string, { requestType: { type: DescMessage }; responseType: { type: DescMessage } }>;
    t.equal(d[rpc!]!.requestType.type.name, req);
    t.equal(d[rpc!]!.responseType.type.name, resp);
  }
});
