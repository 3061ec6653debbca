/** A web PKI server certificate (DNS name localhost) from a private CA, made by the openssl CLI, for `tls: web` routes. */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export function webCertificate(dir: string): { caFile: string; certPem: string; keyPem: string } {
  const f = (n: string) => path.join(dir, n);
  const ossl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=Test Web CA');
  ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('api.key'), '-out', f('api.csr'), '-subj', '/CN=localhost');
  writeFileSync(f('api.ext'), 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n');
  ossl('x509', '-req', '-in', f('api.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('api.pem'), '-days', '2', '-extfile', f('api.ext'));
  return { caFile: f('ca.pem'), certPem: readFileSync(f('api.pem'), 'utf8'), keyPem: readFileSync(f('api.key'), 'utf8') };
}
