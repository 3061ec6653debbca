/** The short fuzz pass over the attestation targets (see short-pass.ts). */
import { ATTESTATION_TARGETS } from '../../fuzz/targets/attestation.js';
import { shortPass } from './short-pass.js';

shortPass(ATTESTATION_TARGETS);
