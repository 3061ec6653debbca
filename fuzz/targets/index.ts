/** Every fuzz target, by name: one per parser of untrusted bytes. */
import type { FuzzTarget } from '../target.js';
import { ATTESTATION_TARGETS } from './attestation.js';
import { SPIFFE_TARGETS } from './spiffe.js';
import { TEXT_TARGETS } from './text.js';

export const TARGETS: readonly FuzzTarget[] = [...ATTESTATION_TARGETS, ...SPIFFE_TARGETS, ...TEXT_TARGETS];

export function targetNamed(name: string): FuzzTarget | undefined {
  return TARGETS.find((t) => t.name === name);
}
