/**
 * The mutating webhook's decision as a pure function: a parsed AdmissionReview v1 in, the review
 * to answer (or an AdmissionReviewError for a malformed one) out.
 *
 * Namespace opt-in: a webhook never sees the namespace's labels; the MutatingWebhookConfiguration's
 * namespaceSelector (attest-sidecar.io/inject=enabled) decides which pods reach it. So every pod
 * that reaches the webhook counts as opted in by its namespace, unless its own annotation says
 * "false". A configuration without that selector would inject every pod annotated or not.
 */
import { InjectionRefusal } from './annotations.js';
import { injectPodTemplate } from './inject.js';
import { jsonPatch } from './json-patch.js';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';
/** metav1.Status reason of a refused pod (a Kubernetes StatusReason, not one of our codes). */
const STATUS_BAD_REQUEST = 'BadRequest';

/** The body is not an AdmissionReview v1 request: answered 400 with {"error"}. */
export class AdmissionReviewError extends Error {
  readonly reason = 'admission_review_invalid';
}

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  patchType?: 'JSONPatch';
  patch?: string;
  status?: { code: number; reason: string; message: string };
}

export interface AdmissionReviewAnswer {
  apiVersion: typeof ADMISSION_API_VERSION;
  kind: 'AdmissionReview';
  response: AdmissionResponse;
}

/** What happened, for the log and tests: the pod was patched, refused, or let through unchanged. */
export type AdmissionOutcome = 'injected' | 'refused' | 'unchanged';

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function field(o: Json, key: string, what: string, check: (v: unknown) => boolean): unknown {
  const v = o[key];
  if (!check(v)) throw new AdmissionReviewError(`${what} ${v === undefined ? 'is missing' : 'is invalid'}`);
  return v;
}

const isString = (v: unknown): v is string => typeof v === 'string';
/** UIDs are UUIDs; anything printable up to 128 characters is echoed back as it came. */
const isUid = (v: unknown): v is string => typeof v === 'string' && /^[\x21-\x7e]{1,128}$/.test(v);

function podName(pod: Json): string {
  const m = isObject(pod['metadata']) ? pod['metadata'] : {};
  if (typeof m['name'] === 'string' && m['name'] !== '') return m['name'].slice(0, 253);
  if (typeof m['generateName'] === 'string') return `${m['generateName'].slice(0, 253)}*`;
  return '(unnamed)';
}

/**
 * Answers one review. Only CREATE of core v1 Pods (no subresource) is injected; every other
 * request is allowed without a patch.
 */
export function answerAdmissionReview(review: unknown, options: { image: string }): { answer: AdmissionReviewAnswer; outcome: AdmissionOutcome; message?: string } {
  if (!isObject(review)) throw new AdmissionReviewError('the body must be a JSON object (an AdmissionReview)');
  field(review, 'apiVersion', `apiVersion (expected ${ADMISSION_API_VERSION})`, (v) => v === ADMISSION_API_VERSION);
  field(review, 'kind', 'kind (expected AdmissionReview)', (v) => v === 'AdmissionReview');
  const request = field(review, 'request', 'request', isObject) as Json;
  const uid = field(request, 'uid', 'request.uid', isUid) as string;
  const kind = field(request, 'kind', 'request.kind', isObject) as Json;
  for (const k of ['group', 'version', 'kind']) field(kind, k, `request.kind.${k}`, isString);
  const operation = field(request, 'operation', 'request.operation', isString) as string;
  const reply = (response: Omit<AdmissionResponse, 'uid'>): AdmissionReviewAnswer => ({ apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response: { uid, ...response } });

  const isPod = kind['group'] === '' && kind['version'] === 'v1' && kind['kind'] === 'Pod';
  if (!isPod || operation !== 'CREATE' || (request['subResource'] !== undefined && request['subResource'] !== '')) {
    return { answer: reply({ allowed: true }), outcome: 'unchanged' };
  }
  const pod = field(request, 'object', 'request.object (the pod)', isObject) as Json;
  try {
    const result = injectPodTemplate(pod, { image: options.image, namespaceOptedIn: true }, '');
    if (result.outcome === 'unchanged') return { answer: reply({ allowed: true }), outcome: 'unchanged', message: result.why };
    const patch = Buffer.from(JSON.stringify(jsonPatch(pod, result.object))).toString('base64');
    return { answer: reply({ allowed: true, patchType: 'JSONPatch', patch }), outcome: 'injected' };
  } catch (err) {
    if (!(err instanceof InjectionRefusal)) throw err;
    const message = `attest-sidecar injector refused pod ${podName(pod)}: ${err.message} (${err.reason})`;
    return { answer: reply({ allowed: false, status: { code: 400, reason: STATUS_BAD_REQUEST, message } }), outcome: 'refused', message };
  }
}
