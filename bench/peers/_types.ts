/**
 * The shapes every peer shares: its name, the options of a run and the
 * figures it measures.
 *
 * @module
 */

/** The peers this module can measure: BullMQ with each of Redis's fsync policies, and Celery. */
export type PeerName = "bullmq" | "bullmq_always" | "celery";

/** A peer in an open loop at a share of its maximum: latencies in ms from each task's due time. */
export interface PeerOpenLoop {
  rate: number;
  sent: number;
  tps: number;
  p50: number;
  p99: number;
  max: number;
}

/** A peer's CPU time per task at the largest size, in µs: its client, worker(s) and broker. */
export interface PeerCpu {
  client: number | null;
  server: number | null;
  broker: number | null;
  total: number | null;
}

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
  /** The same in a few words, for a table: "AOF, fsync every second". */
  durability_level?: string;
  /** In an open loop at 50% and 80% of its throughput at the largest size, by share ("50", "80"). */
  open?: Record<string, PeerOpenLoop>;
  /** CPU per task over its timed runs at the largest size. */
  cpu_us_per_task?: PeerCpu;
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
  /** How long each open loop runs (at 50% and 80% of the maximum); 0: none. @default {0} */
  openLoopMs?: number;
  /** Progress lines. @default {nothing} */
  log?: (line: string) => void;
  /** Stops the peer's processes and rejects with the signal's reason. */
  signal?: AbortSignal;
}
