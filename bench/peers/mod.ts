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

/** The peers this module can measure. */
export type PeerName = "bullmq" | "celery";

/** The names of the peers, in the order the bench shows them. */
export const PEERS: readonly PeerName[] = ["bullmq", "celery"];

/** What one run of a peer measured. */
export interface PeerFigures {
  name: PeerName;
  /** What ran, e.g. "bullmq 6.7.0, ioredis 6.0.0 (Node v20.20.2, Redis 7.0.15, AOF everysec)". */
  version: string;
  /** Median tasks/s by size ("1000", "10000"): N no-op tasks sent at once, each awaited. */
  tps: Record<string, number>;
  /** Every timed run's tasks/s by size, from which `tps` is the median. */
  tps_samples: Record<string, number[]>;
  /** Median over the seed runs of (wall time of a 100 ms and a 200 ms task together) - 200 ms. */
  seed_overhead_ms_median: number;
  /** Wall time of each seed run in ms, before the 200 ms are taken off. */
  seed_samples_ms: number[];
  /** RSS of the worker process(es) 1 s after they are ready: main and children for prefork. */
  idle_rss_mb: number;
  /** From spawning the worker process to it consuming (see each peer for its signal). */
  ready_ms: number;
  /** One plain sentence on what survives a crash. */
  durability: string;
}

/** Whether a peer can run here, and if not, what is missing and how to install it. */
export type PeerAvailability =
  | { name: string; available: true }
  | { name: string; available: false; reason: string };

/** Options of {@linkcode peersAvailable}. */
export interface PeersAvailableOptions {
  /** The RabbitMQ that Celery would use. @default {$AMQP_URL, else amqp://guest:guest@localhost:5672} */
  amqpUrl?: string;
}

/** Options of {@linkcode runPeer}. */
export interface RunPeerOptions {
  /** Numbers of tasks sent at once, each measured on its own, e.g. [1000, 10000]. */
  sizes: number[];
  /** Repetitions of the seed scenario (100 ms and 200 ms tasks together). */
  seedRuns: number;
  /** The RabbitMQ for Celery's broker (BullMQ ignores it and starts its own Redis). */
  amqpUrl: string;
  /** Timed runs per size, after one untimed run. @default {5} */
  runs?: number;
  /** Progress lines. @default {nothing} */
  log?: (line: string) => void;
  /** Stops the peer's processes and rejects with the signal's reason. */
  signal?: AbortSignal;
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
  const reasons = await Promise.all([bullmqAvailable(), celeryAvailable(amqpUrl)]);
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
      return await runBullmq({ ...options, runs });
    case "celery":
      return await runCelery({ ...options, runs });
    default:
      throw new TypeError(`Cannot run peer '${name}': the peers are ${PEERS.join(", ")}`);
  }
}
