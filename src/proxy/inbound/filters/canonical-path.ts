/**
 * Refuses request targets whose path is not canonical (dot segments, `//`, encoded separators,
 * non-shortest UTF-8): the policy must decide on the path the app will act on. The last target
 * found canonical is remembered per connection, as keep-alive peers repeat their targets.
 */
import { canonicalRequestPath } from '../../../policy/actions.js';
import { refuse } from '../../../reasons.js';
import type { RequestFilter } from '../../chain.js';
import type { InboundContext } from '../context.js';

export const canonicalPath: RequestFilter<InboundContext> = {
  name: 'canonical-path',
  onRequest(ctx) {
    const conn = ctx.conn!;
    const url = ctx.url;
    if (conn.canonicalUrl === url) {
      ctx.canonicalPath = conn.canonicalPath!;
      return undefined;
    }
    const canonical = canonicalRequestPath(url);
    if (!canonical.ok) return refuse('path_not_canonical', `Malformed request path: ${canonical.error}`);
    conn.canonicalUrl = url;
    conn.canonicalPath = canonical.path;
    ctx.canonicalPath = canonical.path;
    return undefined;
  },
};
