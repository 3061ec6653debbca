import { PolicyError, compilePolicy } from '../../src/policy/compile.js';
import type { Problem } from '../../src/lib/yaml-reader.js';

/** The problems compiling `text` reports; fails the test when it compiles or throws anything else. */
export function policyProblems(text: string, file = 'p.yaml'): Problem[] {
  try {
    compilePolicy(text, file);
  } catch (err) {
    if (err instanceof PolicyError) return [...err.problems];
    throw err;
  }
  throw new Error('expected a PolicyError');
}
