/** FilterChain: order, synchronous and waiting filters, refusals and failures. */
import t from 'tap';
import { FilterChain, type ChainEnds, type FilterOutcome, type RequestFilter } from '../../../src/proxy/chain.js';
import { refusal, type Refusal } from '../../../src/reasons.js';

interface Ctx {
  ran: string[];
}

type Step = 'continue' | 'refuse' | 'throw' | 'wait-continue' | 'wait-refuse' | 'reject';

const NO = refusal('peer_unverified');

function filter(name: string, step: Step): RequestFilter<Ctx> {
  return {
    name,
    onRequest(ctx): FilterOutcome | Promise<FilterOutcome> {
      ctx.ran.push(name);
      switch (step) {
        case 'continue':
          return undefined;
        case 'refuse':
          return NO;
        case 'throw':
          throw new Error(`${name} broke`);
        case 'wait-continue':
          return Promise.resolve(undefined);
        case 'wait-refuse':
          return Promise.resolve(NO);
        case 'reject':
          return Promise.reject(new Error(`${name} broke`));
      }
    },
  };
}

function outcome(): ChainEnds<Ctx> & { end: Promise<string> } {
  let settle!: (v: string) => void;
  const end = new Promise<string>((r) => (settle = r));
  return {
    end,
    route: (ctx) => settle(`route after ${ctx.ran.join(',')}`),
    refuse: (ctx, r: Refusal) => settle(`refuse ${r.reason} after ${ctx.ran.join(',')}`),
    fail: (ctx, err) => settle(`fail ${(err as Error).message} after ${ctx.ran.join(',')}`),
  };
}

t.test('FilterChain: table', async (t) => {
  const cases: [string, Step[], string][] = [
    ['no filters', [], 'route after '],
    ['all continue', ['continue', 'continue', 'continue'], 'route after a,b,c'],
    ['a refusal stops the chain', ['continue', 'refuse', 'continue'], 'refuse peer_unverified after a,b'],
    ['a waiting filter resumes at the next one', ['wait-continue', 'continue'], 'route after a,b'],
    ['a waited refusal', ['continue', 'wait-refuse', 'continue'], 'refuse peer_unverified after a,b'],
    ['a throw fails the request', ['continue', 'throw', 'continue'], 'fail b broke after a,b'],
    ['a rejection fails the request', ['reject', 'continue'], 'fail a broke after a'],
    ['after a wait, a throw still fails it', ['wait-continue', 'throw'], 'fail b broke after a,b'],
  ];
  for (const [name, steps, expected] of cases) {
    const ends = outcome();
    const chain = new FilterChain<Ctx>(
      steps.map((s, i) => filter(String.fromCharCode(97 + i), s)),
      ends,
    );
    chain.run({ ran: [] });
    t.equal(await ends.end, expected, name);
  }
});

t.test('FilterChain: absent filters are dropped; names in order', async (t) => {
  const chain = new FilterChain<Ctx>([filter('a', 'continue'), undefined, false, filter('b', 'continue')], outcome());
  t.strictSame(chain.names, ['a', 'b']);
});

t.test('FilterChain: an end that throws fails the request instead', async (t) => {
  let failed: unknown;
  const chain = new FilterChain<Ctx>([filter('a', 'wait-refuse')], {
    route: () => undefined,
    refuse: () => {
      throw new Error('refuse broke');
    },
    fail: (_, err) => (failed = err),
  });
  chain.run({ ran: [] });
  await new Promise((r) => setImmediate(r));
  t.match(failed, { message: 'refuse broke' });
});

t.test('FilterChain: a fail end that throws is contained (sync and after a wait)', async (t) => {
  for (const step of ['throw', 'reject'] as const) {
    let calls = 0;
    const chain = new FilterChain<Ctx>([filter('a', step)], {
      route: () => undefined,
      refuse: () => undefined,
      fail: () => {
        calls++;
        throw new Error('fail broke');
      },
    });
    t.doesNotThrow(() => chain.run({ ran: [] }), step);
    await new Promise((r) => setImmediate(r));
    t.equal(calls, 1, `${step}: fail ran once, its error went nowhere`);
  }
});
