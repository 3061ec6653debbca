/** The short fuzz pass over the text targets (see short-pass.ts). */
import { TEXT_TARGETS } from '../../fuzz/targets/text.js';
import { shortPass } from './short-pass.js';

shortPass(TEXT_TARGETS);
