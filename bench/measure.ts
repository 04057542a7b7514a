/**
 * The benchmark's measurements, in one run on one broker: a worker's start
 * and idle memory, throughput of the product against the bare amqplib echo,
 * the seed scenario's overhead on both, and the worker as a container. Every
 * side runs as its own process, like real callers and workers.
 *
 * @module
 */

import type { Broker } from "../core/broker/mod.ts";
import { type CoreFigures, measureCore } from "./core.ts";
import { type PeerFigures, peersAvailable, runPeer } from "./peers/mod.ts";
import { measureSandboxCost, type SandboxCost } from "./sandbox_cost.ts";
import { measureScale, type ScaleFigures } from "./scale.ts";
import { BenchServers, type QueueType } from "./servers.ts";
import { measureVariants, type VariantFigures } from "./variants.ts";
import { type ContainerFigures, measureContainer, measureHostWorker } from "./worker_start.ts";

/** Options for {@linkcode measure}. */
export interface MeasureOptions {
  /** The broker's URL, password included: the processes connect with it. */
  url: string;
  /** A connection of a user that may create and delete queues. */
  admin: Broker;
  quick: boolean;
  /** Timed pairs of runs per size. */
  reps: number;
  prefetch: number;
  container: boolean;
  /** The queue types to measure the product and the limit on; the first is the main one. */
  queueTypes: QueueType[];
  /** Also run the peers (BullMQ, Celery) whose parts are installed. */
  peers: boolean;
  /** Prints progress for people. */
  say: (line: string) => void;
}

/** A peer's figures, or why it was skipped. */
export type PeerResult = PeerFigures | { skipped: string };

/** What {@linkcode measure} found. */
export interface Measurements {
  sizes: number[];
  /** The product against the limit, by queue type, the main one first. */
  queueTypes: Record<string, CoreFigures>;
  /** The main queue type's throughput and seed pairs (as `queueTypes[main]`). */
  throughput: CoreFigures["throughput"];
  seed: CoreFigures["seed"];
  variants: VariantFigures;
  scale: ScaleFigures;
  readyMs: number[];
  idleRss: number[];
  container?: ContainerFigures;
  /** Why the container figures are missing, when they were asked for and failed. */
  containerSkipped?: string;
  sandbox: SandboxCost;
  peers: Record<string, PeerResult>;
}

/** Takes every measurement; the queues it made are deleted at the end, whatever happens. */
export async function measure(options: MeasureOptions): Promise<Measurements> {
  const { url, admin, say } = options;
  const servers = new BenchServers(url, admin);
  const sizes = options.quick ? [200, 1000] : [1000, 10_000];
  const seedPairs = options.quick ? 2 : 10;
  try {
    // 1. A worker's start and idle memory, as a host process.
    say("Worker start and idle memory...");
    const { readyMs, idleRss } = await measureHostWorker(
      url,
      (rep) => servers.queue(`idle${rep}`),
      Math.max(1, Math.min(3, options.reps)),
    );

    // 2. The product against the limit, on each queue type: throughput, the
    // seed scenario, CPU per task, tail latency in an open loop.
    const queueTypes: Measurements["queueTypes"] = {};
    for (const queueType of options.queueTypes) {
      queueTypes[queueType] = await measureCore(servers, {
        queueType,
        sizes,
        reps: options.reps,
        seedPairs,
        prefetch: options.prefetch,
        openLoopMs: options.quick ? 1000 : 5000,
        say,
      });
    }
    const main = queueTypes[options.queueTypes[0]];

    // 3. The default worker, and the sandbox in a process of its own.
    const variants = await measureVariants(servers, {
      size: sizes.at(-1)!,
      reps: options.quick ? 2 : Math.max(3, Math.ceil(options.reps / 2)),
      seedPairs: options.quick ? 2 : 6,
      prefetch: options.prefetch,
      say,
    });

    // 4. Fan-outs of any size: the client's stream, dispatch and load.
    const scale = await measureScale(servers, {
      quick: options.quick,
      prefetch: options.prefetch,
      reps: options.reps,
      say,
    });

    say("Sandbox cost...");
    const sandbox = await measureSandboxCost(options.quick ? 2 : 5, options.quick ? 1000 : 5000);

    // 5. The worker as a container.
    // A failed image build (no base image here, say) costs only these
    // figures, not the minutes of measurements already taken.
    let container: ContainerFigures | undefined;
    let containerSkipped: string | undefined;
    if (!options.quick && options.container) {
      say("Worker container...");
      try {
        container = await measureContainer(url, servers.queue("container"), 3);
      } catch (error) {
        containerSkipped = error instanceof Error ? error.message : String(error);
        say(`Skipping the worker container: ${containerSkipped}`);
      }
    }

    // 6. The peers, on the same machine, one after the other.
    const peers: Measurements["peers"] = {};
    if (options.peers) {
      for (const availability of await peersAvailable({ amqpUrl: url })) {
        const name = availability.name as PeerFigures["name"];
        if (!availability.available) {
          say(`Skipping ${name}: ${availability.reason}`);
          peers[name] = { skipped: availability.reason };
          continue;
        }
        say(`Peer ${name}...`);
        // A peer that fails (or hangs, and is stopped) costs only its own
        // figures, not the minutes of measurements already taken.
        try {
          peers[name] = await runPeer(name, {
            sizes,
            seedRuns: seedPairs,
            runs: options.reps,
            amqpUrl: url,
            openLoopMs: options.quick ? 1000 : 5000,
            log: (line) => say(`  ${line}`),
          });
        } catch (error) {
          const reason = `it failed: ${error instanceof Error ? error.message : String(error)}`;
          say(`Skipping ${name}: ${reason}`);
          peers[name] = { skipped: reason };
        }
      }
    }
    return {
      sizes,
      queueTypes,
      throughput: main.throughput,
      seed: main.seed,
      variants,
      scale,
      readyMs,
      idleRss,
      container,
      containerSkipped,
      sandbox,
      peers,
    };
  } finally {
    await servers.cleanUp();
  }
}
