/**
 * A worker's start and memory, the two ways it runs: as a host process (the
 * time from its spawn to "Consuming", and its resident memory once idle),
 * and as a container (the image built, `docker run` timed to "Consuming"
 * with the broker up, and the image's size; `container.ts` builds and runs
 * it).
 *
 * @module
 */

import { buildWorkerImage, docker, workerRunArgs } from "./container.ts";
import { CONSUMING, startDeno, workerArgs } from "./processes.ts";
import { median, round } from "./stats.ts";

/** A host worker's start, in ms, and idle resident memory, in MiB, one of each per start. */
export interface HostWorkerFigures {
  readyMs: number[];
  idleRss: number[];
}

/** What the benchmark measures of the worker image. */
export interface ContainerFigures {
  ready_ms: number;
  image_mb: number;
}

/** The resident memory of process `pid`, in MiB. */
function rssOf(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = Number(status.match(/^VmRSS:\s+(\d+) kB/m)?.[1]);
  return kb / 1024;
}

/**
 * Starts task_a as a host worker `reps` times, one after the other, each on
 * the queue `queueOf(rep)` of the broker at `url`: times each start to
 * "Consuming" and reads its memory a second later; stops it whatever happens.
 */
export async function measureHostWorker(
  url: string,
  queueOf: (rep: number) => string,
  reps: number,
): Promise<HostWorkerFigures> {
  const readyMs: number[] = [];
  const idleRss: number[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const started = performance.now();
    const process = startDeno(workerArgs("task_a"), {
      AMQP_URL: url,
      METRICS_PORT: "0",
      QUEUE: queueOf(rep),
    });
    try {
      await process.waitForLine(CONSUMING, 30_000);
      readyMs.push(performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      idleRss.push(rssOf(process.child.pid));
    } finally {
      await process.stop();
    }
  }
  return { readyMs, idleRss };
}

/**
 * Builds the task_a image and times `reps` starts to "Consuming" on `queue`
 * of the broker at `url`; `undefined` when no Docker engine answers.
 */
export async function measureContainer(
  url: string,
  queue: string,
  reps: number,
): Promise<ContainerFigures | undefined> {
  if (!(await docker(["info"])).ok) return undefined;
  const tag = `bench-worker-a:${queue}`;
  await buildWorkerImage(tag);
  const samples: number[] = [];
  try {
    for (let rep = 0; rep < reps; rep++) {
      const name = `${queue}-${rep}`;
      const run = await docker(workerRunArgs(tag, url, queue, ["--name", name]));
      if (!run.ok) throw new Error(`Cannot run the worker image: ${run.out}`);
      let readyMs: number | undefined;
      const deadline = Date.now() + 30_000;
      while (readyMs === undefined && Date.now() < deadline) {
        const logs = await docker(["logs", name]);
        const line = logs.out.split("\n").find((l) => CONSUMING.test(l));
        if (line) {
          const startedAt = (await docker(["inspect", "-f", "{{.State.StartedAt}}", name])).out;
          readyMs = Date.parse(JSON.parse(line).ts) - Date.parse(startedAt);
        } else await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await docker(["rm", "-f", name]);
      if (readyMs === undefined) throw new Error("The worker container did not start consuming");
      samples.push(readyMs);
    }
    const size = Number((await docker(["image", "inspect", "-f", "{{.Size}}", tag])).out);
    return { ready_ms: round(median(samples)), image_mb: round(size / 1e6) };
  } finally {
    await docker(["rmi", "-f", tag]);
  }
}
