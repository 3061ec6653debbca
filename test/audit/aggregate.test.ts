import t from 'tap';
import { AggregatedAudit } from '../../src/audit/aggregate.js';
import { MemoryAuditSink } from '../../src/audit/record.js';

t.test('the first event is written at once, repeats once per window with their count', async (t) => {
  const sink = new MemoryAuditSink();
  const agg = new AggregatedAudit(sink, 60_000);
  t.teardown(() => agg.close());
  agg.note('peer_rejected', 'tls_certificate_untrusted', 'refused', undefined, '10.0.0.1');
  t.match(sink.records, [{ type: 'peer_rejected', decision: 'deny', reason: 'tls_certificate_untrusted', count: 1, remote: '10.0.0.1' }]);
  for (let i = 0; i < 500; i++) agg.note('peer_rejected', 'tls_certificate_untrusted', 'refused', undefined, `10.0.0.${i % 200}`);
  agg.note('connection_refused', 'peer_connection_limit', 'cap', 'spiffe://td/a');
  t.equal(sink.records.length, 2, 'a flood adds nothing until the window ends; another kind is written at once');
  agg.flush();
  t.match(sink.records[2], { reason: 'tls_certificate_untrusted', count: 500, remote: '10.0.0.0' });
  t.equal(sink.records.length, 3, 'kinds with nothing new write nothing');
  agg.flush();
  agg.note('peer_rejected', 'tls_certificate_untrusted', 'refused');
  t.match(sink.records[3], { count: 1 }, 'after a quiet window the next event is written at once again');
});

t.test('distinct kinds beyond the bound fold into one overflow record', async (t) => {
  const sink = new MemoryAuditSink();
  const agg = new AggregatedAudit(sink, 60_000, 4);
  t.teardown(() => agg.close());
  for (let i = 0; i < 100; i++) agg.note('connection_refused', 'peer_connection_limit', 'cap', `spiffe://td/p${i}`);
  t.equal(sink.records.length, 4, 'the first kinds are written');
  agg.flush();
  t.match(sink.records.slice(4), [{ reason: 'aggregated_overflow', count: 96 }]);
});
