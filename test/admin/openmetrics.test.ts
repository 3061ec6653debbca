/**
 * /metrics of a real sidecar, scraped over HTTP in both formats: OpenMetrics (what Prometheus asks
 * for first) must be a valid family set (no family whose `_total` sample collides with another
 * family), and Node's process metrics keep their standard names.
 */
import t from 'tap';
import { OPENMETRICS_CONTENT_TYPE, openMetricsText } from '../../src/admin/openmetrics.js';
import { SidecarMetrics } from '../../src/admin/metrics.js';
import { TestMesh, viaProxy } from '../helpers/mesh.js';

interface Family {
  type: string;
  samples: string[];
}

/** A strict-enough OpenMetrics reader: families, their types, and which samples belong to them. */
function parseOpenMetrics(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const lines = text.split('\n');
  if (lines.at(-1) !== '' || lines.at(-2) !== '# EOF') throw new Error('the exposition must end with "# EOF\\n"');
  let current: { name: string; family: Family } | undefined;
  for (const line of lines.slice(0, -2)) {
    const meta = /^# (HELP|TYPE|UNIT) ([a-zA-Z_:][a-zA-Z0-9_:]*) ?(.*)$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta as unknown as [string, string, string, string];
      if (kind === 'HELP') {
        if (families.has(name)) throw new Error(`family ${name} declared twice`);
        current = { name, family: { type: 'unknown', samples: [] } };
        families.set(name, current.family);
      } else if (kind === 'TYPE') {
        if (current?.name !== name) throw new Error(`TYPE ${name} outside its family`);
        current.family.type = rest;
      }
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!sample) throw new Error(`not a sample line: ${JSON.stringify(line)}`);
    const name = sample[1]!;
    if (!current) throw new Error(`sample ${name} before any family`);
    const suffixes: Record<string, string[]> = { counter: ['_total', '_created'], gauge: [''], histogram: ['_bucket', '_sum', '_count', '_created'], summary: ['', '_sum', '_count', '_created'], unknown: [''] };
    const allowed = (suffixes[current.family.type] ?? ['']).map((s) => current!.name + s);
    if (!allowed.includes(name)) throw new Error(`sample ${name} does not belong to the ${current.family.type} family ${current.name}`);
    if (Number.isNaN(Number(sample[3])) && sample[3] !== 'NaN') throw new Error(`bad value in ${line}`);
    current.family.samples.push(line);
  }
  return families;
}

t.test('the OpenMetrics formatter (unit): counters lose _total in the family name only; escaping', async (t) => {
  const m = new SidecarMetrics({ svidSecondsToExpiry: () => undefined, inboundConnections: () => 2 }, { sidecar: 'a"b\\c' });
  m.inboundHandshakes.inc(3);
  m.request('inbound', 'allow', 'allowed', 0.001);
  const text = await openMetricsText(m.registry);
  const families = parseOpenMetrics(text);
  t.equal(families.get('attest_sidecar_inbound_connections')?.type, 'counter');
  t.match(text, /^attest_sidecar_inbound_connections_total\{sidecar="a\\"b\\\\c"\} 3$/m);
  t.equal(families.get('attest_sidecar_inbound_connections_open')?.type, 'gauge');
  t.match(text, /^attest_sidecar_inbound_connections_open\{sidecar="a\\"b\\\\c"\} 2$/m);
  t.equal(families.get('attest_sidecar_requests')?.type, 'counter', 'the hand-made request counter too');
  t.match(text, /^attest_sidecar_requests_total\{direction="inbound",decision="allow",reason="allowed",sidecar=/m);
  // The Prometheus format is untouched by an OpenMetrics scrape (prom-client would rename in place).
  const prom = await m.registry.metrics();
  t.match(prom, /^attest_sidecar_inbound_connections_total\{sidecar="a\\"b\\\\c"\} 3$/m);
  t.match(prom, /^attest_sidecar_requests_total\{/m);
});

t.test('a real sidecar /metrics over HTTP: valid OpenMetrics, standard process metric names', async (t) => {
  const mesh = await TestMesh.start({ agents: ['orchestrator'] });
  t.teardown(() => mesh.close());
  // One request through the mesh so the request counters and the handshake counter have samples.
  t.equal((await viaProxy(mesh.proxyOf('orchestrator'), 'GET', 'http://control-plane/agents')).status, 200);
  const admin = mesh.adminOf(mesh.server);

  const res = await fetch(`${admin}/metrics`, { headers: { accept: 'application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5' } });
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), OPENMETRICS_CONTENT_TYPE);
  const families = parseOpenMetrics(await res.text());
  for (const name of families.keys()) {
    if (name.endsWith('_total')) t.notOk(families.has(name.slice(0, -'_total'.length)), `family ${name} and ${name.slice(0, -6)} would collide`);
    const counterSample = `${name}_total`;
    t.notOk(families.has(counterSample) && families.get(name)?.type === 'counter', `counter ${name} collides with family ${counterSample}`);
  }
  t.equal(families.get('attest_sidecar_inbound_connections')?.type, 'counter');
  t.equal(families.get('attest_sidecar_inbound_connections_open')?.type, 'gauge');
  t.ok(families.get('attest_sidecar_inbound_connections')!.samples.some((s) => / [1-9]\d*$/.test(s)), 'the handshake counter counted the request');
  t.equal(families.get('process_cpu_user_seconds')?.type, 'counter', 'process_cpu_user_seconds_total under its standard name');
  for (const gauge of ['nodejs_heap_size_total_bytes', 'nodejs_heap_size_used_bytes', 'process_resident_memory_bytes', 'process_start_time_seconds', 'nodejs_eventloop_lag_seconds']) {
    t.equal(families.get(gauge)?.type, 'gauge', `${gauge} under its standard name`);
  }
  t.notOk([...families.keys()].some((n) => /^attest_sidecar_(process|nodejs)_/.test(n)), 'no prefixed process metrics');

  const plain = await fetch(`${admin}/metrics`);
  t.match(plain.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  const text = await plain.text();
  t.match(text, /^process_cpu_user_seconds_total\{[^}]*\} [\d.e+-]+$/m);
  t.match(text, /^nodejs_heap_size_total_bytes\{[^}]*\} \d+$/m);
  t.match(text, /^attest_sidecar_inbound_connections_total\{[^}]*\} [1-9]/m, 'the counter keeps _total after an OpenMetrics scrape');
  t.match(text, /^attest_sidecar_inbound_connections_open\{[^}]*\} \d+$/m);
});
