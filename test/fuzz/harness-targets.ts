/** Targets that misbehave on purpose, to check the fuzz harness catches each kind of failure. */
import { SidecarError } from '../../src/errors.js';
import type { ReasonCode } from '../../src/reasons.js';
import type { FuzzTarget } from '../../fuzz/target.js';

const seeds = async () => ({ seeds: [Buffer.from('abcdefgh')] });

export const TARGETS: FuzzTarget[] = [
  {
    name: 'typed-only',
    about: 'refuses odd first bytes with a typed error',
    async prepare() {
      return {
        ...(await seeds()),
        run: (b: Uint8Array) => {
          if ((b[0] ?? 0) & 1) throw new SidecarError('fuzz_refused' as ReasonCode, 'odd');
          return 'ok';
        },
      };
    },
  },
  {
    name: 'untyped-on-short',
    about: 'throws a TypeError for inputs under 4 bytes',
    async prepare() {
      return {
        ...(await seeds()),
        run: (b: Uint8Array) => {
          if (b.length < 4) throw new TypeError('short input');
          throw new SidecarError('Not A Reason' as ReasonCode, 'a reason code must be snake_case');
        },
      };
    },
  },
  {
    name: 'spins-on-x',
    about: 'loops forever when the input holds an x',
    async prepare() {
      return {
        ...(await seeds()),
        run: (b: Uint8Array) => {
          if (!Buffer.from(b).includes('x')) return 'ok';
          for (;;) {
            // a parser stuck in a loop
          }
        },
      };
    },
  },
];
