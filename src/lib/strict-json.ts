/**
 * JSON from peers (evidence, SPIFFE bundles): JSON.parse plus what it lets through silently. JSON.parse keeps the last
 * of duplicate members ({"a":1,"a":2} is {"a":2}), so two readers of the same bytes can see
 * different values; here a duplicate member name (after unescaping: "a" and "\u0061" are the
 * same name) is refused. Nesting deeper than `maxDepth` is refused too. One linear pass over
 * the text after JSON.parse has validated it.
 */

export class StrictJsonError extends Error {}

/** Parses `text`; throws StrictJsonError (bad JSON, duplicate member, too deep). */
export function parseStrictJson(text: string, maxDepth = 16): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new StrictJsonError((err as Error).message);
  }
  checkMembers(text, maxDepth);
  return value;
}

interface Frame {
  /** member names seen so far; undefined for an array */
  readonly names: Set<string> | undefined;
  expectName: boolean;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Walks valid JSON text: every string in member-name position is checked against its object's names. */
function checkMembers(text: string, maxDepth: number): void {
  const stack: Frame[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const start = i;
      for (i++; text.charCodeAt(i) !== QUOTE; i++) if (text.charCodeAt(i) === BACKSLASH) i++;
      const top = stack[stack.length - 1];
      if (top?.names && top.expectName) {
        const name = JSON.parse(text.slice(start, i + 1)) as string;
        if (top.names.has(name)) throw new StrictJsonError(`duplicate member ${JSON.stringify(name)}`);
        top.names.add(name);
        top.expectName = false;
      }
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (stack.length >= maxDepth) throw new StrictJsonError(`nested deeper than ${maxDepth}`);
      stack.push({ names: c === 0x7b ? new Set() : undefined, expectName: c === 0x7b });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top?.names) top.expectName = true;
    }
  }
}
