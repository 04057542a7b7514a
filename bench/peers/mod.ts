/**
 * The peers of `deno task bench --peers`: BullMQ (on Redis) and Celery (on
 * RabbitMQ) measured in the shapes of the product's benchmark, each with
 * its own worker and client processes.
 *
 * ```ts
 * const ready = (await peersAvailable()).filter((peer) => peer.available);
 * const figures = await runPeer("bullmq", { sizes: [1000, 10_000], seedRuns: 10, amqpUrl });
 * ```
 *
 * @module
 */

import { bullmqAvailable, runBullmq } from "./bullmq.ts";
import { celeryAvailable, runCelery } from "./celery.ts";
import type { PeerFigures, PeerName, RunPeerOptions } from "./_types.ts";

export type { PeerFigures, PeerName, RunPeerOptions };

/** The names of the peers, in the order the bench shows them. */
export const PEERS: readonly PeerName[] = ["bullmq", "bullmq_always", "celery"];

/** Whether a peer can run here, and if not, what is missing and how to install it. */
export type PeerAvailability =
  | { name: string; available: true }
  | { name: string; available: false; reason: string };

/** Options of {@linkcode peersAvailable}. */
export interface PeersAvailableOptions {
  /** The RabbitMQ that Celery would use. @default {$AMQP_URL, else amqp://guest:guest@localhost:5672} */
  amqpUrl?: string;
}

/** The default RabbitMQ, as the rest of the project chooses it. */
export function defaultAmqpUrl(): string {
  return Deno.env.get("AMQP_URL") || "amqp://guest:guest@localhost:5672";
}

/**
 * Checks quickly, without installing anything, whether each peer can run:
 * BullMQ needs Node 20+, npm (or BullMQ already in its cache) and
 * redis-server; Celery needs Debian's python3-celery and a RabbitMQ that
 * answers. A peer that cannot run says what is missing and the command that
 * installs it.
 */
export async function peersAvailable(
  options: PeersAvailableOptions = {},
): Promise<PeerAvailability[]> {
  const amqpUrl = options.amqpUrl ?? defaultAmqpUrl();
  const [bullmq, celery] = await Promise.all([bullmqAvailable(), celeryAvailable(amqpUrl)]);
  const reasons = [bullmq, bullmq, celery];
  return PEERS.map((name, i) => {
    const reason = reasons[i];
    return reason === undefined ? { name, available: true } : { name, available: false, reason };
  });
}

/**
 * Measures one peer: starts its worker (and for BullMQ its own Redis),
 * times its start and idle memory, runs its client for throughput and the
 * seed scenario, and stops and cleans up everything it started, also on
 * failure or abort. BullMQ is installed into a cache folder on first use.
 */
export async function runPeer(name: PeerName, options: RunPeerOptions): Promise<PeerFigures> {
  if (options.sizes.length === 0 || !options.sizes.every((n) => Number.isInteger(n) && n > 0)) {
    throw new RangeError(
      `Cannot run a peer as 'sizes' must be positive whole numbers: current value is ${options.sizes}`,
    );
  }
  if (!Number.isInteger(options.seedRuns) || options.seedRuns < 1) {
    throw new RangeError(
      `Cannot run a peer as 'seedRuns' must be a positive whole number: current value is ${options.seedRuns}`,
    );
  }
  const runs = options.runs ?? 5;
  if (!Number.isInteger(runs) || runs < 1) {
    throw new RangeError(
      `Cannot run a peer as 'runs' must be a positive whole number: current value is ${runs}`,
    );
  }
  switch (name) {
    case "bullmq":
      return await runBullmq({ ...options, runs, fsync: "everysec" });
    case "bullmq_always":
      return await runBullmq({ ...options, runs, fsync: "always" });
    case "celery":
      return await runCelery({ ...options, runs });
    default:
      throw new TypeError(`Cannot run peer '${name}': the peers are ${PEERS.join(", ")}`);
  }
}
