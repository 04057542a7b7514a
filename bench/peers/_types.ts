/**
 * The shapes every peer shares: its name, the options of a run and the
 * figures it measures.
 *
 * @module
 */

/** The peers this module can measure. */
export type PeerName = "bullmq" | "celery";

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

/** Options of `runPeer`. */
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
