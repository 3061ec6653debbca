/**
 * DEVELOPMENT ONLY: an in-memory certificate authority for the embedded dev issuer and for tests.
 * Keys live in process memory and are never persisted; nothing here is fit for production trust.
 *
 * Layout mirrors SPIRE: a self-signed root (what goes into the trust bundle) signs an intermediate,
 * which signs the leaf X.509-SVIDs, so verifiers always see chains with an intermediate.
 * Certificates are built with @peculiar/x509 over WebCrypto (`globalThis.crypto`), ECDSA P-256.
 */
// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata polyfill.
import 'reflect-metadata';
import { createPrivateKey, randomBytes, X509Certificate as NodeX509Certificate } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { SignJWT, createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify, type JWTPayload } from 'jose';
import { SidecarError } from '../errors.js';
import { parseSpiffeId, parseTrustDomain, type SpiffeId, type TrustDomain } from '../spiffe/id.js';
import { parseX509SvidRaw } from '../spiffe/svid.js';
import { X509Bundle } from '../spiffe/bundle/x509-bundle.js';
import { JwtBundle } from '../spiffe/bundle/jwt-bundle.js';
import {
  webcrypto,
  ECDSA_SHA256,
  BACKDATE_MS,
  CA_LIFETIME_MS,
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
  type CaGeneration,
  type JwtKey,
  type VerifiedJwtSvid,
} from './ca-keys.js';

export class DevCa {
  readonly trustDomain: TrustDomain;
  /** Oldest first; the last one signs. Old roots stay in the bundle until dropOldRoots(). */
  private generations: CaGeneration[] = [];
  private jwtKeys: JwtKey[] = [];

  private constructor(trustDomain: TrustDomain) {
    this.trustDomain = trustDomain;
  }

  /** DEVELOPMENT ONLY. Creates a fresh root, intermediate and JWT signing key in memory. */
  static async create(opts: { trustDomain: string | TrustDomain }): Promise<DevCa> {
    const td = typeof opts.trustDomain === 'string' ? parseTrustDomain(opts.trustDomain) : opts.trustDomain;
    const ca = new DevCa(td);
    await ca.rotate();
    return ca;
  }

  private get current(): CaGeneration {
    const g = this.generations[this.generations.length - 1];
    if (!g) throw new SidecarError('dev_ca_uninitialised', 'dev CA has no signing generation');
    return g;
  }

  private get currentJwtKey(): JwtKey {
    const k = this.jwtKeys[this.jwtKeys.length - 1];
    if (!k) throw new SidecarError('dev_ca_uninitialised', 'dev CA has no JWT signing key');
    return k;
  }

  /** New root + intermediate (+ JWT key); old roots and JWT keys remain trusted until dropOldRoots(). */
  async rotate(): Promise<void> {
    const tdUri = this.trustDomain.idString();
    const now = Date.now();
    const notBefore = new Date(now - BACKDATE_MS);
    const notAfter = new Date(now + CA_LIFETIME_MS);
    const tag = randomBytes(4).toString('hex');

    const rootKeys = await generateKeys('ec-p256');
    const root = await x509.X509CertificateGenerator.createSelfSigned(
      {
        serialNumber: randomSerialHex(),
        name: `O=attest-sidecar development CA, CN=dev root ${this.trustDomain.name} ${tag}`,
        notBefore,
        notAfter,
        keys: rootKeys,
        signingAlgorithm: ECDSA_SHA256,
        extensions: [
          new x509.BasicConstraintsExtension(true, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
          await x509.SubjectKeyIdentifierExtension.create(rootKeys.publicKey, false, webcrypto),
          new x509.SubjectAlternativeNameExtension([{ type: 'url', value: tdUri }]),
        ],
      },
      webcrypto,
    );

    const interKeys = await generateKeys('ec-p256');
    const intermediate = await x509.X509CertificateGenerator.create(
      {
        serialNumber: randomSerialHex(),
        subject: `O=attest-sidecar development CA, CN=dev intermediate ${this.trustDomain.name} ${tag}`,
        issuer: root.subject,
        notBefore,
        notAfter,
        publicKey: interKeys.publicKey,
        signingKey: rootKeys.privateKey,
        signingAlgorithm: ECDSA_SHA256,
        extensions: [
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
          await x509.SubjectKeyIdentifierExtension.create(interKeys.publicKey, false, webcrypto),
          await x509.AuthorityKeyIdentifierExtension.create(rootKeys.publicKey, false, webcrypto),
          new x509.SubjectAlternativeNameExtension([{ type: 'url', value: tdUri }]),
        ],
      },
      webcrypto,
    );

    const jwt = await generateKeyPair('ES256', { extractable: true });
    const kid = randomBytes(16).toString('base64url');
    const publicJwk = { ...(await exportJWK(jwt.publicKey)), kid, alg: 'ES256', use: 'jwt-svid' };

    this.generations.push({ root, intermediate, intermediateKey: interKeys.privateKey });
    this.jwtKeys.push({ kid, privateKey: jwt.privateKey, publicJwk });
  }

  /** Forgets every root and JWT key except the current ones. */
  dropOldRoots(): void {
    this.generations = [this.current];
    this.jwtKeys = [this.currentJwtKey];
  }

  /** The trust bundle: every root not yet dropped. */
  bundle(): X509Bundle {
    return X509Bundle.fromDer(this.trustDomain, this.bundleDer());
  }

  /** Roots as concatenated DER (the Workload API wire form). */
  bundleDer(): Buffer {
    return Buffer.concat(this.generations.map((g) => toBuffer(g.root.rawData)));
  }

  /** The current root alone, PEM (e.g. as an `openssl verify -CAfile`). */
  rootPem(): string {
    return pem('CERTIFICATE', new Uint8Array(this.current.root.rawData));
  }

  /** The current signing intermediate, PEM. */
  intermediatePem(): string {
    return pem('CERTIFICATE', new Uint8Array(this.current.intermediate.rawData));
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
      opts.notAfter ?? new Date(Math.min(Math.ceil((now + ttlMs) / 1000) * 1000, this.current.intermediate.notAfter.getTime()));
    const issued = await this.issueCertificate({
      uris: [id.toString()],
      notBefore,
      notAfter,
      keyType: opts.keyType ?? 'ec-p256',
      ...(opts.extensions ? { extensions: opts.extensions } : {}),
    });
    const svid = parseX509SvidRaw(issued.chainDer, issued.keyDer, opts.hint ?? '');
    return {
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
    if (opts.selfSigned) {
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
      const gen = this.current;
      extensions.push(await x509.AuthorityKeyIdentifierExtension.create(gen.intermediate.publicKey, false, webcrypto));
      cert = await x509.X509CertificateGenerator.create(
        {
          serialNumber: randomSerialHex(),
          subject,
          issuer: gen.intermediate.subject,
          notBefore,
          notAfter,
          publicKey: keys.publicKey,
          signingKey: gen.intermediateKey,
          signingAlgorithm: ECDSA_SHA256,
          extensions,
        },
        webcrypto,
      );
      chain = [cert, gen.intermediate];
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
    };
  }

  // ---- JWT-SVIDs (ES256) ----

  /** The JWKS document (JSON text) of every JWT key not yet dropped. */
  jwksJson(): string {
    return JSON.stringify({ keys: this.jwtKeys.map((k) => k.publicJwk) });
  }

  jwtBundle(): JwtBundle {
    return JwtBundle.fromJwks(this.trustDomain, this.jwksJson());
  }

  /** Signs a JWT-SVID for `spiffeId` with the current key: sub, aud, iat, exp. */
  async signJwtSvid(spiffeId: string | SpiffeId, audience: string[], ttlSeconds = JWT_SVID_DEFAULT_TTL_SECONDS): Promise<string> {
    const id = typeof spiffeId === 'string' ? parseSpiffeId(spiffeId) : spiffeId;
    if (audience.length === 0) throw new SidecarError('jwt_svid_audience_missing', 'a JWT-SVID needs at least one audience');
    const key = this.currentJwtKey;
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT' })
      .setSubject(id.toString())
      .setAudience(audience.length === 1 ? audience[0]! : audience)
      .setIssuedAt(now)
      .setExpirationTime(now + ttlSeconds)
      .sign(key.privateKey);
  }

  /** Verifies a JWT-SVID of this trust domain: signature (by kid), exp, aud contains `audience`, sub is a SPIFFE ID here. */
  async verifyJwtSvid(token: string, audience: string): Promise<VerifiedJwtSvid> {
    // jose only selects keys with use 'sig' (or none); SPIFFE marks them 'jwt-svid'.
    const jwks = createLocalJWKSet({ keys: this.jwtKeys.map(({ publicJwk: { use: _use, ...jwk } }) => jwk) });
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
