/**
 * Marshalling of the few TPM 2.0 commands the attester speaks (Part 3): Startup,
 * CreatePrimary, Quote, PCR_Read, ReadPublic, FlushContext. Header: tag u16, size u32,
 * code u32, handles, [authorizationSize u32 + sessions], parameters. Authorisation uses
 * the password session TPM_RS_PW with an empty password.
 */
import { AttestationError } from '../types.js';
import { TpmReader, TpmWriter } from './bytes.js';
import { TPM_ALG, TPM_CC, TPM_RS_PW, TPM_ST_NO_SESSIONS, TPM_ST_SESSIONS, type PcrBank } from './constants.js';
import { readPcrSelection, writePcrSelection, type PcrSelection } from './structures.js';
import { TpmCommandError, TpmTransportError } from './rc.js';
import type { TpmTransport } from './transport.js';

type CommandName = keyof typeof TPM_CC;

interface Request {
  handles?: number[];
  /** authorise handle(s) with one TPM_RS_PW session each */
  pwSessions?: number;
  params?: Buffer;
  /** handles in the response before the parameters */
  responseHandles?: number;
}

export interface Response {
  readonly rc: number;
  readonly handles: number[];
  /** reader over exactly the response parameter area */
  readonly params: TpmReader;
}

function marshal(name: CommandName, req: Request): Buffer {
  const w = new TpmWriter();
  const sessions = req.pwSessions ?? 0;
  w.u16(sessions > 0 ? TPM_ST_SESSIONS : TPM_ST_NO_SESSIONS).u32(0).u32(TPM_CC[name]);
  for (const h of req.handles ?? []) w.u32(h);
  if (sessions > 0) {
    const auth = new TpmWriter();
    // TPMS_AUTH_COMMAND: handle, nonce (empty), attributes (continueSession), hmac = password (empty)
    for (let i = 0; i < sessions; i++) auth.u32(TPM_RS_PW).u16(0).u8(0x01).u16(0);
    w.u32(auth.length).bytes(auth.finish());
  }
  if (req.params) w.bytes(req.params);
  const out = w.finish();
  out.writeUInt32BE(out.length, 2);
  return out;
}

/** Sends a command; a non-zero response code becomes a TpmCommandError unless `allow` lists it. */
export async function runCommand(
  transport: TpmTransport,
  name: CommandName,
  req: Request,
  allow: number[] = [],
): Promise<Response> {
  const raw = await transport.transmit(marshal(name, req));
  try {
    const r = new TpmReader(raw, `TPM2_${name} response`);
    const tag = r.u16('tag');
    const size = r.u32('responseSize');
    const rc = r.u32('responseCode');
    if (size !== raw.length) throw new TpmTransportError(`TPM2_${name}: response size ${size} != ${raw.length}`);
    if (rc !== 0) {
      if (allow.includes(rc)) return { rc, handles: [], params: new TpmReader(new Uint8Array(0), name) };
      throw new TpmCommandError(name, rc);
    }
    const handles: number[] = [];
    for (let i = 0; i < (req.responseHandles ?? 0); i++) handles.push(r.u32('handle'));
    let paramBytes: Uint8Array;
    if (tag === TPM_ST_SESSIONS) {
      const paramSize = r.u32('parameterSize');
      paramBytes = r.take(paramSize, 'parameters'); // the session area after it is not needed for TPM_RS_PW
    } else {
      paramBytes = r.take(r.remaining, 'parameters');
    }
    return { rc, handles, params: new TpmReader(paramBytes, `TPM2_${name} parameters`) };
  } catch (err) {
    if (err instanceof AttestationError) throw new TpmTransportError(`malformed TPM2_${name} response: ${err.message}`, { cause: err });
    throw err;
  }
}

/** Runs `parse` over a response, turning parse errors into transport errors. */
export function parseParams<T>(name: string, res: Response, parse: (r: TpmReader) => T): T {
  try {
    return parse(res.params);
  } catch (err) {
    if (err instanceof AttestationError) throw new TpmTransportError(`malformed TPM2_${name} response: ${err.message}`, { cause: err });
    throw err;
  }
}

export function pcrSelectionParams(alg: PcrBank, indices: readonly number[]): Buffer {
  const w = new TpmWriter();
  writePcrSelection(w, [{ alg, indices }]);
  return w.finish();
}

/** TPM2_CreatePrimary parameters: empty sensitive, the template, no outsideInfo, no creation PCRs. */
export function createPrimaryParams(template: Uint8Array): Buffer {
  const w = new TpmWriter();
  w.u16(4).u16(0).u16(0); // TPM2B_SENSITIVE_CREATE { userAuth: empty, data: empty }
  w.tpm2b(template); // TPM2B_PUBLIC
  w.u16(0); // outsideInfo
  w.u32(0); // creationPCR: empty TPML_PCR_SELECTION
  return w.finish();
}

/** TPM2_Quote parameters: qualifyingData, inScheme TPM_ALG_NULL (the key's own scheme), PCRselect. */
export function quoteParams(qualifyingData: Uint8Array, alg: PcrBank, indices: readonly number[]): Buffer {
  const w = new TpmWriter();
  w.tpm2b(qualifyingData).u16(TPM_ALG.NULL);
  w.bytes(pcrSelectionParams(alg, indices));
  return w.finish();
}

export interface PcrReadResult {
  updateCounter: number;
  selection: PcrSelection[];
  digests: Uint8Array[];
}

export function parsePcrRead(r: TpmReader): PcrReadResult {
  const updateCounter = r.u32('pcrUpdateCounter');
  const selection = readPcrSelection(r, 'pcrSelectionOut');
  const count = r.u32('pcrValues.count');
  if (count > 8) throw new TpmTransportError(`TPM2_PCR_Read returned ${count} digests (max 8)`);
  const digests: Uint8Array[] = [];
  for (let i = 0; i < count; i++) digests.push(r.tpm2b(`pcrValues[${i}]`, 64));
  return { updateCounter, selection, digests };
}
