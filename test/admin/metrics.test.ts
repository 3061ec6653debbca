import t from 'tap';
import { SidecarMetrics } from '../../src/admin/metrics.js';

t.test('request counters and latency histogram in Prometheus text format', async (t) => {
  const m = new SidecarMetrics({ svidSecondsToExpiry: () => 42, inboundConnections: () => 3 }, { sidecar: 'x' });
  for (const s of [0.0004, 0.003, 0.003, 0.2, 20]) m.request('inbound', 'allow', 'allowed', s);
  m.request('inbound', 'deny', 'unknown_agent', 0.0001);
  const text = await m.registry.metrics();
  const value = (re: RegExp) => Number(re.exec(text)?.[1]);
  t.equal(value(/attest_sidecar_requests_total\{direction="inbound",decision="allow",reason="allowed",sidecar="x"\} (\d+)/), 5);
  t.equal(value(/attest_sidecar_requests_total\{direction="inbound",decision="deny",reason="unknown_agent",sidecar="x"\} (\d+)/), 1);
  const bucket = (le: string) => value(new RegExp(`attest_sidecar_request_duration_seconds_bucket\\{le="${le.replace('+', '\\+')}",direction="inbound",decision="allow",sidecar="x"\\} (\\d+)`));
  t.equal(bucket('0.0005'), 1);
  t.equal(bucket('0.0025'), 1);
  t.equal(bucket('0.005'), 3, 'cumulative');
  t.equal(bucket('0.25'), 4);
  t.equal(bucket('10'), 4);
  t.equal(bucket('+Inf'), 5);
  t.equal(value(/attest_sidecar_request_duration_seconds_count\{direction="inbound",decision="allow",sidecar="x"\} (\d+)/), 5);
  t.ok(Math.abs(value(/attest_sidecar_request_duration_seconds_sum\{direction="inbound",decision="allow",sidecar="x"\} ([\d.]+)/) - 20.2064) < 1e-9);
  t.match(text, /# TYPE attest_sidecar_requests_total counter/);
  t.match(text, /attest_sidecar_svid_expiry_seconds\{sidecar="x"\} 42/);
  t.match(text, /attest_sidecar_inbound_connections_open\{sidecar="x"\} 3/);
});
