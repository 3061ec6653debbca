import t from 'tap';
import { AUDIT_FIELDS, AuditMembersFormatter, auditMembers, flatAscii, IsoClock } from '../../src/audit/format.js';
import type { AuditFields } from '../../src/audit/record.js';

/** What the template must equal: V8's JSON.stringify of the same fields in the same order. */
function reference(r: AuditFields): string {
  const ordered: Record<string, unknown> = {};
  for (const k of AUDIT_FIELDS) if (r[k] !== undefined) ordered[k] = r[k];
  return JSON.stringify(ordered).slice(1, -1);
}

const every: AuditFields = {
  type: 'budget',
  decision: 'deny',
  reason: 'budget_exceeded',
  peer: 'spiffe://agent-mesh.local/ns/agent-swarm/sa/orchestrator',
  method: 'POST',
  path: '/tasks',
  action: 'task.dispatch',
  route: 'control-plane',
  status: 402,
  latency_ms: 0.125,
  request_id: '7d0c2a51-9b3e-8f41-a2c6-00000000002a',
  detail: 'spent 4.75 of 5',
  agent: 'orchestrator',
  amount_usd: 0.25,
  spent_usd: 4.75,
  limit_usd: 5,
  principal: 'token',
  target: 'spiffe://agent-mesh.local/x',
  remote: '127.0.0.1',
};

t.test('every field is written, exactly as JSON.stringify writes ASCII values', async (t) => {
  t.equal(auditMembers(every), reference(every));
  t.same(JSON.parse(`{${auditMembers(every)}}`), every);
});

t.test('only the fields that are set appear (undefined is left out)', async (t) => {
  const r: AuditFields = { type: 'inbound_decision', decision: 'allow', reason: 'allowed', peer: undefined, status: 200 };
  t.equal(auditMembers(r), '"type":"inbound_decision","decision":"allow","reason":"allowed","status":200');
});

t.test('strings an attacker controls are escaped: quotes, backslashes, controls, non-ASCII, lone surrogates', async (t) => {
  const hostile = ['/a"b', '/a\\b', '/\u0000\u001f\n\r\t', '/\u007f', '/caf\u00e9', '/\ud83d\ude00', '/\u202e', '/\ud800', '/\udfff"},"decision":"allow'];
  for (const path of hostile) {
    const r: AuditFields = { type: 'inbound_decision', decision: 'deny', reason: 'path_not_canonical', path };
    const out = auditMembers(r);
    t.match(out, /^[\x20-\x7e]*$/, `printable ASCII only: ${JSON.stringify(path)}`);
    t.equal(JSON.parse(`{${out}}`).path, path, 'the value round-trips');
    t.equal(JSON.parse(`{${out}}`).decision, 'deny', 'a value cannot inject members');
  }
  t.equal(auditMembers({ type: 'budget', decision: 'deny', reason: 'x', agent: 'caf\u00e9' }), '"type":"budget","decision":"deny","reason":"x","agent":"caf\\u00e9"');
});

t.test('numbers as JSON.stringify writes them; non-finite numbers become null', async (t) => {
  for (const n of [0, -0, 1e21, 1e-7, 0.1 + 0.2, -5, NaN, Infinity, -Infinity]) {
    const r: AuditFields = { type: 'budget', decision: 'allow', reason: 'charged', amount_usd: n };
    t.equal(auditMembers(r), reference(r), String(n));
  }
});

t.test('latencies (whole thousandths) take the integer path and still equal JSON.stringify', async (t) => {
  const samples = [0.001, 0.01, 0.1, 0.005, 0.05, 0.5, 0.07, 0.12, 0.125, 0.437, 1, 1.001, 1.01, 1.1, 10.25, 999.999, 123456.789, 2 ** 40 / 1000, 9e11 + 0.003, 1e12 + 0.5];
  // Every latency a request can record: Math.round(ms * 1000) / 1000 of random times up to a minute.
  for (let i = 0; i < 20_000; i++) samples.push(Math.round(Math.random() * 60_000_000) / 1000);
  // And values that are not whole thousandths (amounts) fall back to V8's conversion.
  samples.push(0.0001, 0.1234, 1 / 3, 2.5e-4, 1e15 / 1000 + 0.25, 1e16, 5e-324);
  let mismatches = 0;
  for (const n of samples) {
    const r: AuditFields = { type: 'inbound_decision', decision: 'allow', reason: 'allowed', latency_ms: n };
    if (auditMembers(r) !== reference(r)) {
      mismatches++;
      t.fail(`latency ${n}: ${auditMembers(r)} vs ${reference(r)}`);
    }
  }
  t.equal(mismatches, 0, `${samples.length} values`);
});

t.test('IsoClock matches Date#toISOString across second, minute, day and year boundaries', async (t) => {
  const clock = new IsoClock();
  const base = Date.UTC(2026, 11, 31, 23, 59, 58, 990);
  for (let ms = base; ms < base + 2100; ms += 7) t.equal(clock.format(ms), new Date(ms).toISOString());
  for (const ms of [0, 1, 999, 1000, 86_399_999, Date.UTC(1999, 0, 1), Date.UTC(2038, 0, 19, 3, 14, 8, 1)]) {
    t.equal(clock.format(ms), new Date(ms).toISOString(), String(ms));
  }
  // Going backwards (a clock step) is handled too.
  t.equal(clock.format(base + 5), new Date(base + 5).toISOString());
});

t.test('repeated and many distinct literal fields (reason, peer, action) stay exact and ASCII', async (t) => {
  let mismatches = 0;
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 3000; i++) {
      const r: AuditFields = { type: 'inbound_decision', decision: 'deny', reason: `r${i % 7}`, peer: `spiffe://td/${i}\u00e9"`, action: i % 2 ? 'a.b' : 'x\ny', route: 'r', method: 'GET' };
      const line = `{${auditMembers(r)}}`;
      if (!/^[\x20-\x7e]*$/.test(line) || JSON.stringify(JSON.parse(line)) !== `{${reference(r)}}`) mismatches++;
    }
  }
  t.equal(mismatches, 0, 'over the cache bound and back');
});

t.test('the formatter that reuses the previous head writes exactly auditMembers, record after record', async (t) => {
  // Every field takes one of two values (one of them mostly undefined), so consecutive records
  // often differ in one field only: each such change must show in the output.
  const pick = <T>(i: number, k: number, a: T, b: T): T => (((i * 2654435761) >>> k) & 1 ? a : b);
  const f = new AuditMembersFormatter();
  let mismatches = 0;
  let reused = 0;
  let previous = '';
  for (let i = 0; i < 20_000; i++) {
    const r: AuditFields = {
      type: pick(i, 1, 'inbound_decision', 'outbound_decision'),
      decision: pick(i, 3, 'allow', 'deny'),
      reason: pick(i, 5, 'allowed', 'action_not_permitted'),
      peer: pick(i, 7, 'spiffe://td/a', undefined),
      method: pick(i, 9, 'GET', 'POST'),
      // Equal paths in different string objects, as request targets are.
      path: pick(i, 11, `/agents/${i % 2}`.slice(0, 9), '/agents/1'),
      action: pick(i, 13, 'agent.status', undefined),
      route: pick(i, 15, 'control-plane', undefined),
      status: pick(i, 17, 200, 403),
      latency_ms: (i % 1000) / 1000,
      detail: pick(i, 19, 'why "quoted"', undefined),
      agent: pick(i, 21, 'orchestrator', undefined),
    };
    const out = f.format(r);
    if (out !== auditMembers(r)) {
      mismatches++;
      if (mismatches < 5) t.fail(`record ${i}: ${out} vs ${auditMembers(r)}`);
    }
    if (out.slice(0, 60) === previous.slice(0, 60)) reused++;
    previous = out;
  }
  t.equal(mismatches, 0, '20,000 records');
  t.ok(reused > 0, 'some consecutive records share their head');
  // A record repeated but for its latency: only the latency changes.
  const base: AuditFields = { type: 'inbound_decision', decision: 'allow', reason: 'allowed', peer: 'spiffe://td/a', method: 'GET', path: '/x', status: 200, latency_ms: 1 };
  t.equal(f.format(base), auditMembers(base));
  t.equal(f.format({ ...base, latency_ms: 2.5 }), auditMembers({ ...base, latency_ms: 2.5 }));
  for (const k of ['type', 'decision', 'reason', 'peer', 'method', 'path', 'action', 'route', 'status'] as const) {
    f.format(base);
    const changed = { ...base, [k]: k === 'status' ? 500 : k === 'type' ? 'outbound_decision' : k === 'decision' ? 'deny' : 'other' } as AuditFields;
    t.equal(f.format(changed), auditMembers(changed), `a change of ${k} alone shows`);
  }
});

t.test('flatAscii returns the same ASCII text, also for strings built from many pieces', async (t) => {
  let all = '';
  for (let c = 0; c < 128; c++) all += String.fromCharCode(c); // built piece by piece: a tree in V8
  t.equal(flatAscii(all), all, 'every ASCII code unit, control characters included');
  t.equal(flatAscii(''), '');
  // What the formatter flattens: a head with non-ASCII input escaped to ASCII before it gets here.
  const r: AuditFields = { type: 'inbound_decision', decision: 'deny', reason: 'path_not_canonical', peer: 'spiffe://td/a', method: 'GET', path: '/caf\u00e9/\u202e', status: 400, latency_ms: 0.5 };
  const f = new AuditMembersFormatter();
  t.equal(f.format(r), auditMembers(r));
  t.equal(f.format({ ...r, latency_ms: 0.25 }), auditMembers({ ...r, latency_ms: 0.25 }), 'the reused, flattened head');
  t.match(f.format(r), /^[\x20-\x7e]*$/, 'printable ASCII only');
});
