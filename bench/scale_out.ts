/**
 * `deno task bench --scale-out`: what adding containers of a function buys.
 *
 * - Scale from zero: a task is published to a function with no replica
 *   (its queue exists, nobody consumes it, as KEDA leaves it at zero), then
 *   one worker container is started for it; the figure is the time from the
 *   publish to the reply: container start, runtime start, connection, and
 *   the task. KEDA's polling interval (30 s by default) comes on top.
 * - One replica against three: the throughput of the same function with
 *   1 and then 3 containers on one queue, each running one task at a time
 *   (`CONCURRENCY=1`), on tasks of `work_ms` of work.
 *
 * Self-contained: it builds the task_a image, runs its containers on the
 * host network against the benchmark's broker, on a queue of its own, and
 * removes them. Without a Docker engine it measures nothing.
 *
 * @module
 */

import { type Broker, connect } from "../core/broker/mod.ts";
import { deadLetterQueueOf, retryQueuesOf } from "../core/contract/names.ts";
import { runLoad } from "../dispatcher/load.ts";
import { TaskClient } from "../client/task_client.ts";
import { buildWorkerImage, docker as runDocker, workerRunArgs } from "./container.ts";
import { median, round } from "./stats.ts";

/** The figures of {@linkcode measureScaleOut}. */
export interface ScaleOutFigures {
  /** From a task published to a function at zero replicas to its reply, with one container started then. */
  scale_from_zero_ms: { median: number; samples: number[] };
  /** Tasks per second of one function with 1 and 3 replicas. */
  replicas: {
    work_ms: number;
    tasks: number;
    one_per_s: number;
    three_per_s: number;
    /** three_per_s / one_per_s: 3 at best. */
    ratio: number;
  };
}

/** Options for {@linkcode measureScaleOut}. */
export interface ScaleOutOptions {
  /** The broker's URL, password included, as the containers connect to it. */
  url: string;
  /** An open connection of a user that may declare and delete queues. */
  admin: Broker;
  /** Fewer samples and tasks: checks that it works, not the figures. */
  quick: boolean;
  say: (line: string) => void;
}

/** Runs the docker CLI and resolves with its output; rejects with its errors when it fails. */
async function docker(args: string[]): Promise<string> {
  const { ok, out } = await runDocker(args);
  if (!ok) throw new Error(`docker ${args[0]} failed: ${out.trim()}`);
  return out;
}

async function dockerRuns(): Promise<boolean> {
  try {
    await docker(["info", "--format", "{{.ServerVersion}}"]);
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts one worker container of `tag` on `queue`, taking one task at a
 * time (what replicas add shows only when one replica is the limit: at the
 * default of 64, one replica alone runs all 30 tasks at once); resolves
 * with its id.
 */
function startReplica(tag: string, url: string, queue: string): Promise<string> {
  return docker(
    workerRunArgs(tag, url, queue, [
      "--rm",
      "-e",
      "METRICS_PORT=0",
      "-e",
      "LOG_LEVEL=warn",
      "-e",
      "CONCURRENCY=1",
    ]),
  );
}

async function consumers(admin: Broker, queue: string, n: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  while ((await admin.inspectQueue(queue))?.consumers !== n) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${n} consumers on ${queue}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Measures scale from zero and 1 against 3 replicas; `undefined` without Docker. */
export async function measureScaleOut(
  options: ScaleOutOptions,
): Promise<ScaleOutFigures | undefined> {
  if (!(await dockerRuns())) {
    options.say("Scale-out: skipped, no Docker engine answers");
    return undefined;
  }
  const { admin, url, quick, say } = options;
  const queue = `bench_scale_${crypto.randomUUID().slice(0, 8)}`;
  const tag = `bench-worker-a:${queue}`;
  say("Scale-out: building the task_a image");
  await buildWorkerImage(tag);
  const running = new Set<string>();
  const stopAll = async () => {
    await Promise.all([...running].map((id) => docker(["rm", "-f", id]).catch(() => {})));
    running.clear();
    await consumers(admin, queue, 0);
  };
  const start = async () => {
    const id = await startReplica(tag, url, queue);
    running.add(id);
    return id;
  };
  // A connection of its own: one Direct Reply-to consumer per connection.
  const connection = await connect({ url }, { connectionName: "bench-scale-out" });
  const client = await TaskClient.open(connection, {
    functions: new Map([["task_a", { queue, user: connection.user }]]),
  });
  try {
    // A first replica declares the queue as the function's workers do; at
    // zero replicas the queue stays, and its tasks wait there.
    await start();
    await consumers(admin, queue, 1);
    await stopAll();

    const samples: number[] = [];
    for (let rep = 0; rep < (quick ? 1 : 3); rep++) {
      const started = performance.now();
      const call = client.request("task_a", { work_ms: 0 }, { timeoutMs: 120_000 });
      await start();
      const outcome = await call;
      if (outcome.kind !== "reply" || outcome.reply.status !== "success") {
        throw new Error("The task sent at zero replicas got no successful reply");
      }
      samples.push(round(performance.now() - started));
      await stopAll();
    }
    say(`Scale from zero: ${samples.join(", ")} ms`);

    const workMs = 20;
    const tasks = quick ? 120 : 300;
    const throughput: number[] = [];
    for (const replicas of [1, 3]) {
      for (let i = 0; i < replicas; i++) await start();
      await consumers(admin, queue, replicas);
      const load = (n: number) =>
        runLoad(client, {
          tasks: n,
          concurrency: 30,
          targets: ["task_a"],
          payload: { work_ms: workMs },
          timeoutMs: 120_000,
        });
      await load(replicas * 10);
      const result = await load(tasks);
      if (result.succeeded !== tasks) {
        throw new Error(
          `Only ${result.succeeded} of ${tasks} tasks succeeded on ${replicas} replicas`,
        );
      }
      throughput.push(result.throughput);
      say(`${replicas} replica(s): ${result.throughput} tasks/s`);
      await stopAll();
    }
    return {
      scale_from_zero_ms: { median: round(median(samples)), samples },
      replicas: {
        work_ms: workMs,
        tasks,
        one_per_s: throughput[0],
        three_per_s: throughput[1],
        ratio: round(throughput[1] / throughput[0], 2),
      },
    };
  } finally {
    await client.close();
    await connection.close();
    await Promise.all([...running].map((id) => docker(["rm", "-f", id]).catch(() => {})));
    // Retry queues never expire: they go with the queue they serve.
    for (const name of [queue, deadLetterQueueOf(queue), ...retryQueuesOf(queue)]) {
      await admin.deleteQueue(name).catch(() => {});
    }
    await docker(["rmi", "-f", tag]).catch(() => {});
  }
}

/** The lines that report {@linkcode ScaleOutFigures}, as a Markdown table. */
export function formatScaleOut(figures: ScaleOutFigures): string[] {
  const { replicas: r, scale_from_zero_ms: zero } = figures;
  return [
    "",
    "| Scale-out | Figure |",
    "| --- | --- |",
    `| Scale from zero: publish to reply, one container started (median of ${zero.samples.length}) | ${zero.median} ms |`,
    `| 1 replica, ${r.tasks} tasks of ${r.work_ms} ms | ${r.one_per_s} tasks/s |`,
    `| 3 replicas, same tasks | ${r.three_per_s} tasks/s (${r.ratio}x) |`,
  ];
}
