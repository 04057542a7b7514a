/**
 * Exponential backoff with jitter, shared by connection retries and task
 * retries so both space their attempts the same documented way.
 *
 * @module
 */

/** How waits grow between attempts. */
export interface BackoffPolicy {
  /** Wait before the second attempt, in milliseconds. */
  baseDelayMs: number;
  /** Each wait is this many times the one before. */
  factor: number;
  /** No nominal wait exceeds this, in milliseconds. */
  maxDelayMs: number;
  /** Spread each wait uniformly over ±jitter of its nominal value (0 to 1). */
  jitter: number;
}

/** The wait before retry number `retry` (1 for the first retry) before jitter. */
export function nominalDelay(retry: number, policy: BackoffPolicy): number {
  if (policy.baseDelayMs === 0) return 0;
  const raw = policy.baseDelayMs * policy.factor ** Math.max(0, retry - 1);
  return Math.min(raw, policy.maxDelayMs);
}

/**
 * The wait before retry number `retry`: the nominal delay spread over
 * `[nominal × (1 - jitter), nominal × (1 + jitter)]`, so replicas that failed
 * together do not retry together.
 */
export function backoffDelay(
  retry: number,
  policy: BackoffPolicy,
  random: () => number = Math.random,
): number {
  const nominal = nominalDelay(retry, policy);
  return Math.round(nominal * (1 - policy.jitter + 2 * policy.jitter * random()));
}

/**
 * How attempts to reach a lost broker are spaced, by workers and callers
 * alike: from 0.5 s up to 15 s.
 */
export const RECONNECT_POLICY: Readonly<BackoffPolicy> = Object.freeze({
  baseDelayMs: 500,
  factor: 2,
  maxDelayMs: 15_000,
  jitter: 0.2,
});
