/** A minimal valid sidecar config with an inbound side, for tests that add one section to it. */
import { parseConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';

export const BASE_CONFIG = `identity: { source: files, cert: c.pem, key: k.pem, bundle: b.pem }
inbound: { listen: 127.0.0.1:0, actions: [] }
policy: p.yaml
`;

/** 'ok' when BASE_CONFIG plus `text` parses, else the ConfigError's message (other errors throw). */
export function configProblems(text: string): string {
  try {
    parseConfig(BASE_CONFIG + text, '/etc/attest/sidecar.yaml', {});
    return 'ok';
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.message;
  }
}
