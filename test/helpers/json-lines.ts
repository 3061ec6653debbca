import { readFileSync } from 'node:fs';

/** The JSON lines of a file (an audit log), parsed; [] while the file does not exist. */
export function readJsonLines(file: string): Record<string, unknown>[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
