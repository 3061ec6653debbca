/**
 * DEVELOPMENT ONLY: an in-memory certificate authority for the embedded dev issuer and for tests.
 * Keys live in process memory and are never persisted; nothing here is fit for production trust.
 *
 * Layout mirrors SPIRE: by default ('leaf-only') leaves are signed directly by a self-signed CA
 * whose certificate is the bundle root; with `chain: 'intermediate'` a fixed root signs rotating
 * intermediates that are sent with every leaf (SPIRE with an UpstreamAuthority). Authorities go
 * through SPIRE's steps: prepare (published in the bundle), activate (signs), taint, revoke.
 * Certificates are built with @peculiar/x509 over WebCrypto (`globalThis.crypto`), ECDSA P-256.
 */
// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata polyfill.
import 'reflect-metadata';
import { createPrivateKey, X509Certificate as NodeX509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { SignJWT, createLocalJWKSet, jwtVerify, type JWTPayload } from 'jose';
import { SidecarError } from '../errors.js';
import { parseSpiffeId, parseTrustDomain, type SpiffeId, type TrustDomain } from '../spiffe/id.js';
import { parseX509SvidRaw } from '../spiffe/svid.js';
import { X509Bundle } from '../spiffe/bundle/x509-bundle.js';
import { JwtBundle } from '../spiffe/bundle/jwt-bundle.js';
import {
  webcrypto,
  ECDSA_SHA256,
  BACKDATE_MS,
  DEFAULT_SVID_TTL_SECONDS,
  JWT_SVID_DEFAULT_TTL_SECONDS,
  toBuffer,
  pem,
  randomSerialHex,
  generateKeys,
  signingAlgorithmFor,
  exportPkcs8,
  keyUsageFlags,
  type KeyUsageName,
  type ExtKeyUsageName,
  type IssueSvidOptions,
  type IssuedSvid,
  type IssueCertificateOptions,
  type IssuedCertificate,
  type JwtKey,
  type VerifiedJwtSvid,
} from './ca-keys.js';
import { DEV_CHAIN_MODES, createAuthority, createSelfSignedRoot, type AuthorityState, type CaAuthority, type DevChainMode, type UpstreamRoot } from './ca-authority.js';

export type { DevChainMode, AuthorityState } from './ca-authority.js';

export interface DevCaOptions {
  trustDomain: string | TrustDomain;
  /** Default 'leaf-only' (SPIRE's default X509-SVID chain). */
  chain?: DevChainMode;
}

/** What an operator sees of an authority (`spire-server localauthority x509 show`). */
export interface AuthorityInfo {
  id: string;
  state: AuthorityState;
  tainted: boolean;
  notAfter: Date;
  /** `kid` of its JWT signing key. */
  jwtKeyId: string;
}

function authorityError(message: string): SidecarError {
  return new SidecarError('dev_ca_authority_invalid', message);
}

export class DevCa {
  readonly trustDomain: TrustDomain;
  readonly chain: DevChainMode;
  /** Oldest first: at most one prepared, one active, any number of old ones until revoked/dropped. */
  private authorities: CaAuthority[] = [];
  /** The fixed root of 'intermediate' mode. */
  private upstream: UpstreamRoot | undefined;

  private constructor(trustDomain: TrustDomain, chain: DevChainMode) {
    this.trustDomain = trustDomain;
    this.chain = chain;
  }

  /** DEVELOPMENT ONLY. Creates a fresh active authority (and, for 'intermediate', its fixed root) in memory. */
  static async create(opts: DevCaOptions): Promise<DevCa> {
    const td = typeof opts.trustDomain === 'string' ? parseTrustDomain(opts.trustDomain) : opts.trustDomain;
    const chain = opts.chain ?? 'leaf-only';
    if (!DEV_CHAIN_MODES.includes(chain)) {
      throw new SidecarError('dev_issuer_invalid', `chain must be one of ${DEV_CHAIN_MODES.join(', ')}, not ${JSON.stringify(chain)}`);
    }
    const ca = new DevCa(td, chain);
    if (chain === 'intermediate') ca.upstream = await createSelfSignedRoot(td, 'upstream root');
    ca.activateAuthority(await ca.prepareAuthority());
    return ca;
  }

  private get current(): CaAuthority {
    const a = this.authorities.find((x) => x.state === 'active');
    if (!a) throw new SidecarError('dev_ca_uninitialised', 'dev CA has no active authority');
    return a;
  }

  /** ID of the authority that signs now. */
  get activeAuthorityId(): string {
    return this.current.id;
  }

  listAuthorities(): AuthorityInfo[] {
    return this.authorities.map((a) => ({ id: a.id, state: a.state, tainted: a.tainted, notAfter: a.signer.notAfter, jwtKeyId: a.jwt.kid }));
  }

  isTainted(authorityId: string): boolean {
    return this.authorities.some((a) => a.id === authorityId && a.tainted);
  }

  /**
   * `localauthority x509 prepare`: a new authority whose root (leaf-only) and JWT key are
   * published in the bundles but which does not sign yet. Replaces an earlier prepared one.
   */
  async prepareAuthority(): Promise<string> {
    const next = await createAuthority(this.trustDomain, this.upstream);
    this.authorities = this.authorities.filter((a) => a.state !== 'prepared');
    this.authorities.push(next);
    return next.id;
  }

  /** `localauthority x509 activate`: the prepared authority signs from now on; the active one becomes old. */
  activateAuthority(authorityId?: string): void {
    const prepared = this.authorities.find((a) => a.state === 'prepared');
    if (!prepared) throw authorityError('only Prepared authorities can be activated');
    if (authorityId !== undefined && authorityId !== prepared.id) throw authorityError('unexpected authority ID');
    for (const a of this.authorities) if (a.state === 'active') a.state = 'old';
    prepared.state = 'active';
  }

  /** `localauthority x509 taint`: an old authority's SVIDs must be replaced now; its root stays trusted until revoked. */
  taintAuthority(authorityId: string): void {
    const a = this.oldAuthority(authorityId, 'tainted');
    if (a.tainted) throw authorityError('root CA is already tainted');
    a.tainted = true;
  }

  /** `localauthority x509 revoke`: a tainted old authority leaves the X.509 and JWT bundles. */
  revokeAuthority(authorityId: string): void {
    const a = this.oldAuthority(authorityId, 'revoked');
    if (!a.tainted) throw authorityError('it is not possible to revoke an untainted root CA');
    this.authorities = this.authorities.filter((x) => x !== a);
  }

  private oldAuthority(authorityId: string, what: 'tainted' | 'revoked'): CaAuthority {
    if (this.upstream) throw authorityError(`local authority can't be ${what} if there is an upstream authority`);
    if (!authorityId) throw authorityError('no authority ID provided');
    if (authorityId === this.current.id) throw authorityError('unable to taint current local authority');
    const a = this.authorities.find((x) => x.id === authorityId);
    if (!a || a.state !== 'old') throw authorityError(`only Old local authorities can be ${what}`);
    return a;
  }

  /** One step (prepare + activate): the old root and JWT key stay in the bundles until dropOldRoots()/revoke. */
  async rotate(): Promise<void> {
    this.activateAuthority(await this.prepareAuthority());
  }

  /** Forgets every old authority (roots and JWT keys); prepared and active ones stay. */
  dropOldRoots(): void {
    this.authorities = this.authorities.filter((a) => a.state !== 'old');
  }

  /** The trust bundle: every root not yet dropped. */
  bundle(): X509Bundle {
    return X509Bundle.fromDer(this.trustDomain, this.bundleDer());
  }

  /** Roots as concatenated DER (the Workload API wire form), oldest first. */
  bundleDer(): Buffer {
    const roots = this.upstream ? [this.upstream.cert] : this.authorities.map((a) => a.root);
    return Buffer.concat(roots.map((r) => toBuffer(r.rawData)));
  }

  /** The current root alone, PEM (e.g. as an `openssl verify -CAfile`). */
  rootPem(): string {
    return pem('CERTIFICATE', new Uint8Array(this.current.root.rawData));
  }

  /** The current signing intermediate, PEM ('intermediate' mode only). */
  intermediatePem(): string {
    const inter = this.current.intermediate;
    if (!inter) throw authorityError("this dev CA signs leaves directly (chain 'leaf-only'): there is no intermediate");
    return pem('CERTIFICATE', new Uint8Array(inter.rawData));
  }

  /** Issues a leaf X.509-SVID: CA:FALSE, one URI SAN, serverAuth+clientAuth, random serial, short TTL. */
  async issueX509Svid(spiffeId: string | SpiffeId, opts: IssueSvidOptions = {}): Promise<IssuedSvid> {
    const id = typeof spiffeId === 'string' ? parseSpiffeId(spiffeId) : spiffeId;
    if (!id.trustDomain.equals(this.trustDomain)) {
      throw new SidecarError('dev_ca_wrong_trust_domain', `${id.toString()} is not in trust domain ${this.trustDomain.name}`);
    }
    const now = Date.now();
    const ttlMs = Math.max(1, opts.ttlSeconds ?? DEFAULT_SVID_TTL_SECONDS) * 1000;
    const notBefore = opts.notBefore ?? new Date(now - BACKDATE_MS);
    // X.509 times have whole seconds: round the expiry up so a short TTL is never cut by up to
    // a second (with a 2 s TTL that would eat most of the half-life rotation margin). Never
    // outlive the signing intermediate (unless the caller asks for odd dates explicitly).
    const notAfter =
      opts.notAfter ?? new Date(Math.min(Math.ceil((now + ttlMs) / 1000) * 1000, this.current.signer.notAfter.getTime()));
    const issued = await this.issueCertificate({
      uris: [id.toString()],
      notBefore,
      notAfter,
      keyType: opts.keyType ?? 'ec-p256',
      ...(opts.extensions ? { extensions: opts.extensions } : {}),
    });
    const svid = parseX509SvidRaw(issued.chainDer, issued.keyDer, opts.hint ?? '');
    return {
      authorityId: issued.authorityId!,
      svid,
      certChainDer: issued.chainDer,
      keyDer: issued.keyDer,
      certChainPem: issued.chainPem,
      keyPem: issued.keyPem,
    };
  }

  /** Issues an arbitrary certificate (for tests that need unusual ones, e.g. no URI SAN). */
  async issueCertificate(opts: IssueCertificateOptions = {}): Promise<IssuedCertificate> {
    const keyType = opts.keyType ?? 'ec-p256';
    // Taken before any await: an activation meanwhile must not mix two authorities' names and keys.
    const authority = opts.selfSigned ? undefined : this.current;
    const keys = await generateKeys(keyType);
    const isCa = opts.isCa ?? false;
    const now = Date.now();
    const notBefore = opts.notBefore ?? new Date(now - BACKDATE_MS);
    const notAfter = opts.notAfter ?? new Date(now + DEFAULT_SVID_TTL_SECONDS * 1000);

    const extensions: x509.Extension[] = [
      new x509.BasicConstraintsExtension(isCa, isCa ? opts.pathLength : undefined, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
    ];
    const kuNames =
      opts.keyUsages ??
      (isCa
        ? (['keyCertSign', 'cRLSign'] as KeyUsageName[])
        : keyType === 'rsa-2048'
          ? (['digitalSignature', 'keyEncipherment'] as KeyUsageName[])
          : (['digitalSignature'] as KeyUsageName[]));
    if (kuNames.length > 0) extensions.push(new x509.KeyUsagesExtension(keyUsageFlags(kuNames), true));
    const ekus = opts.extKeyUsages ?? (isCa ? [] : ['serverAuth', 'clientAuth']);
    if (ekus.length > 0) {
      const oids = ekus.map((e) => (Object.hasOwn(x509.ExtendedKeyUsage, e) ? x509.ExtendedKeyUsage[e as ExtKeyUsageName] : e));
      extensions.push(new x509.ExtendedKeyUsageExtension(oids, false));
    }
    const names: x509.JsonGeneralName[] = [
      ...(opts.uris ?? []).map((value) => ({ type: 'url' as const, value })),
      ...(opts.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ];
    const subject = opts.subject ?? 'O=attest-sidecar development';
    if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
    for (const e of opts.extensions ?? []) extensions.push(new x509.Extension(e.oid, e.critical ?? false, e.derValue));

    let cert: x509.X509Certificate;
    let chain: x509.X509Certificate[];
    if (!authority) {
      cert = await x509.X509CertificateGenerator.createSelfSigned(
        {
          serialNumber: randomSerialHex(),
          name: subject,
          notBefore,
          notAfter,
          keys,
          signingAlgorithm: signingAlgorithmFor(keys.privateKey),
          extensions,
        },
        webcrypto,
      );
      chain = [cert];
    } else {
      extensions.push(await x509.AuthorityKeyIdentifierExtension.create(authority.signer.publicKey, false, webcrypto));
      cert = await x509.X509CertificateGenerator.create(
        {
          serialNumber: randomSerialHex(),
          subject,
          issuer: authority.signer.subject,
          notBefore,
          notAfter,
          publicKey: keys.publicKey,
          signingKey: authority.signerKey,
          signingAlgorithm: ECDSA_SHA256,
          extensions,
        },
        webcrypto,
      );
      chain = authority.intermediate ? [cert, authority.intermediate] : [cert];
    }

    const certDer = toBuffer(cert.rawData);
    const chainDer = Buffer.concat(chain.map((c) => toBuffer(c.rawData)));
    const keyDer = await exportPkcs8(keys.privateKey);
    return {
      certificate: new NodeX509Certificate(certDer),
      privateKey: createPrivateKey({ key: keyDer, format: 'der', type: 'pkcs8' }),
      certDer,
      certPem: pem('CERTIFICATE', certDer),
      chainDer,
      chainPem: chain.map((c) => pem('CERTIFICATE', new Uint8Array(c.rawData))).join(''),
      keyDer,
      keyPem: pem('PRIVATE KEY', keyDer),
      ...(authority ? { authorityId: authority.id } : {}),
    };
  }

  // ---- JWT-SVIDs (ES256) ----

  private jwtKeys(): JwtKey[] {
    return this.authorities.map((a) => a.jwt);
  }

  /** The JWKS document (JSON text) of every JWT key not yet dropped. */
  jwksJson(): string {
    return JSON.stringify({ keys: this.jwtKeys().map((k) => k.publicJwk) });
  }

  jwtBundle(): JwtBundle {
    return JwtBundle.fromJwks(this.trustDomain, this.jwksJson());
  }

  /** Signs a JWT-SVID for `spiffeId` with the current key: sub, aud, iat, exp. */
  async signJwtSvid(spiffeId: string | SpiffeId, audience: string[], ttlSeconds = JWT_SVID_DEFAULT_TTL_SECONDS): Promise<string> {
    const id = typeof spiffeId === 'string' ? parseSpiffeId(spiffeId) : spiffeId;
    if (audience.length === 0) throw new SidecarError('jwt_svid_audience_missing', 'a JWT-SVID needs at least one audience');
    const key = this.current.jwt;
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT' })
      .setSubject(id.toString())
      .setAudience([...audience])
      .setIssuedAt(now)
      .setExpirationTime(now + ttlSeconds)
      .sign(key.privateKey);
  }

  /** Verifies a JWT-SVID of this trust domain: signature (by kid), exp, aud contains `audience`, sub is a SPIFFE ID here. */
  async verifyJwtSvid(token: string, audience: string): Promise<VerifiedJwtSvid> {
    // jose only selects keys with use 'sig' (or none); SPIFFE marks them 'jwt-svid'.
    const jwks = createLocalJWKSet({ keys: this.jwtKeys().map(({ publicJwk: { use: _use, ...jwk } }) => jwk) });
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, jwks, { audience, algorithms: ['ES256'], requiredClaims: ['sub', 'exp', 'aud'] }));
    } catch (err) {
      throw new SidecarError('jwt_svid_invalid', `JWT-SVID rejected: ${(err as Error).message}`, { cause: err });
    }
    let id: SpiffeId;
    try {
      id = parseSpiffeId(String(payload.sub));
    } catch (err) {
      throw new SidecarError('jwt_svid_invalid', 'JWT-SVID subject is not a SPIFFE ID', { cause: err });
    }
    if (!id.trustDomain.equals(this.trustDomain)) {
      throw new SidecarError('jwt_svid_invalid', `JWT-SVID subject ${id.toString()} is not in ${this.trustDomain.name}`);
    }
    return { spiffeId: id, claims: payload };
  }
}
