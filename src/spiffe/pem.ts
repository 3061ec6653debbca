/**
 * PEM blocks over bytes: strict base64 bodies, RFC 1421 headers kept, text between blocks
 * ignored (Go's pem.Decode semantics).
 */
import { X509ParseError } from './x509.js';

export interface PemBlock {
  /** The label between BEGIN/END, e.g. 'CERTIFICATE' (any label is returned). */
  readonly type: string;
  /** RFC 1421 headers (e.g. Proc-Type of an encrypted key); usually empty. */
  readonly headers: ReadonlyMap<string, string>;
  readonly bytes: Buffer;
}

const BEGIN_RE = /-----BEGIN ([^\r\n-]*)-----/g;
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

function asText(input: string | Uint8Array): string {
  // PEM is ASCII; latin1 maps bytes 1:1 so no input byte can become a multi-byte surprise.
  return typeof input === 'string' ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('latin1');
}

/**
 * Every PEM block in `input`, in order; text outside blocks is ignored (like Go's
 * pem.Decode). A BEGIN without its END, or a body that is not strict base64, throws
 * MALFORMED_PEM rather than being silently skipped.
 */
export function decodePemBlocks(input: string | Uint8Array): PemBlock[] {
  const text = asText(input);
  const blocks: PemBlock[] = [];
  BEGIN_RE.lastIndex = 0;
  let m: RegExpExecArray | null;
  while ((m = BEGIN_RE.exec(text)) !== null) {
    const type = m[1]!;
    const endMarker = `-----END ${type}-----`;
    const bodyStart = m.index + m[0].length;
    const end = text.indexOf(endMarker, bodyStart);
    if (end < 0) throw new X509ParseError('MALFORMED_PEM', `PEM block "${type}" has no END line`);
    blocks.push(decodeBlockBody(type, text.slice(bodyStart, end)));
    BEGIN_RE.lastIndex = end + endMarker.length;
  }
  return blocks;
}

function decodeBlockBody(type: string, body: string): PemBlock {
  const lines = body.split(/\r?\n/).map((l) => l.trim());
  const headers = new Map<string, string>();
  let i = 0;
  while (i < lines.length && lines[i] === '') i++;
  // RFC 1421 headers: 'Key: value' lines, ended by a blank line.
  if (i < lines.length && lines[i]!.includes(':')) {
    for (; i < lines.length && lines[i] !== ''; i++) {
      const line = lines[i]!;
      const colon = line.indexOf(':');
      if (colon <= 0) throw new X509ParseError('MALFORMED_PEM', `PEM block "${type}" has a malformed header`);
      headers.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    }
  }
  const b64 = lines.slice(i).join('').replace(/[ \t]/g, '');
  if (!BASE64_RE.test(b64) || b64.length % 4 !== 0) {
    throw new X509ParseError('MALFORMED_PEM', `PEM block "${type}" is not valid base64`);
  }
  return { type, headers, bytes: Buffer.from(b64, 'base64') };
}

/** DER -> one PEM block of `type`, 64-column base64. */
export function toPem(type: string, der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${type}-----\n${lines.join('\n')}${lines.length ? '\n' : ''}-----END ${type}-----\n`;
}
