/** The short fuzz pass over the spiffe targets (see short-pass.ts). */
import { SPIFFE_TARGETS } from '../../fuzz/targets/spiffe.js';
import { shortPass } from './short-pass.js';

shortPass(SPIFFE_TARGETS);
