/**
 * undici parses HTTP/1.1 with llhttp compiled to WebAssembly. By default V8 compiles a wasm
 * function on its first call (Liftoff) and recompiles the hot ones with TurboFan in the
 * background later. For llhttp's main parse function that takes TurboFan tens of MB of compiler
 * memory, at a moment set by traffic: often the first second under load, when the heap is near
 * its working size, so the compiler's memory lands on top of it. Sidecars compile the whole
 * parser with both tiers at start-up instead, from the same bytes undici compiles: V8's native
 * module cache then hands undici the compiled code, and nothing is compiled under load (a test
 * traces it).
 */
import { createRequire } from 'node:module';
import v8 from 'node:v8';

const requireCjs = createRequire(import.meta.url);
/** The one WebAssembly call used here (the project's TypeScript libs do not declare WebAssembly). */
const Wasm = (globalThis as unknown as { WebAssembly: { Module: new (bytes: Uint8Array) => object } }).WebAssembly;

/** Kept for the process's life: V8 shares compiled code for the same bytes only while a module holds it. */
let parser: object | undefined;

/** undici's choice of build (lib/dispatcher/client-h1.js, lazyllhttp): SIMD unless switched off. */
function undiciUsesSimd(): boolean {
  if (process.env.UNDICI_NO_WASM_SIMD === '1') return false;
  if (process.env.UNDICI_NO_WASM_SIMD === '0') return true;
  if (process.arch === 'ppc64') {
    const [major = 0, minor = 0] = process.versions.node.split('.').map((n) => Number.parseInt(n, 10));
    return major > 24 || (major === 24 && minor >= 12);
  }
  return true;
}

/**
 * Compiles undici's HTTP parser now, with TurboFan in the background. Idempotent. The V8 flags
 * it sets are process-wide and apply to WebAssembly compiled after this call; nothing else in
 * the sidecar compiles WebAssembly. A failure leaves undici to compile the parser as before.
 */
export function compileHttpParserEagerly(): void {
  if (parser) return;
  v8.setFlagsFromString('--no-wasm-lazy-compilation');
  v8.setFlagsFromString('--no-wasm-dynamic-tiering');
  if (undiciUsesSimd()) {
    try {
      parser = new Wasm.Module(requireCjs('undici/lib/llhttp/llhttp_simd-wasm.js') as Buffer);
      return;
    } catch {
      // As undici does: fall back to the build without SIMD.
    }
  }
  try {
    parser = new Wasm.Module(requireCjs('undici/lib/llhttp/llhttp-wasm.js') as Buffer);
  } catch {
    // undici will report its own error when it needs the parser.
  }
}
