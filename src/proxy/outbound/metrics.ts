/**
 * What the outbound side counts, declared here by its consumer: the admin server's metrics
 * satisfy these structurally, so the proxy needs nothing of admin/.
 */

/** Request decisions, refused connections and upstream failures. */
export interface OutboundMetrics {
  request(direction: 'inbound' | 'outbound', decision: 'allow' | 'deny' | 'error', reason: string, seconds: number): void;
  connectionRefused(listener: string, reason: string): void;
  upstreamError(direction: 'outbound', reason: string): void;
}
