/**
 * One side of the benchmark, as a long-lived process of its own, driven
 * run by run so that the two sides can take turns (limit, product, limit,
 * product, ...): `bare` calls the bare echo, `product` calls real workers
 * through the dispatcher's own code (the client library, and the fan-out of
 * `deno task dispatch`).
 *
 *   deno run -A bench/client.ts <bare|product> <url>
 *
 * It prints `{"ready": true}` once connected, then reads one JSON command
 * per line on stdin and prints one JSON line for each:
 *
 * - `{"targets": [{"queue", "task", "workMs"}], "tasks": N}` calls every
 *   target `tasks` times at once: `{"ms", "tps", "rss_mb", "heap_mb"}`, plus,
 *   for the product, `stages`: where the time of the slowest task went, from
 *   the timestamps the product keeps anyway (docs/performance.md, "Where the
 *   milliseconds go");
 * - `{"kind": "stream", "target", "count", "window"}` (the product only)
 *   streams `count` calls with `window` in flight (`TaskClient.stream()`):
 *   `{"ms", "tps", "peak_rss_mb"}`, the process's peak resident memory;
 * - `{"kind": "open", "target", "rate", "durationMs"}` starts calls at
 *   `rate` a second for `durationMs` whatever the replies (an open loop):
 *   `{"sent", "tps", "p50", "p99", "max"}`, latencies in ms from each call's
 *   due time, so that a stalled sender does not hide the wait.
 *
 * @module
 */

import { connect, type TaskClient } from "@task-system/client";
import type { CallOutcome } from "../client/mod.ts";
import { dispatchAll } from "../dispatcher/dispatch_all.ts";
import type { TaskSpec } from "../dispatcher/config/load_config.ts";
import { type EchoCall, type EchoClient, openEchoClient } from "./bare_echo.ts";
import type { CpuSnapshot } from "./cpu.ts";

/** What one task of a run is sent to. */
export interface Target {
  queue: string;
  task: string;
  workMs: number;
}

/** One command: run every target `tasks` times at once, `rounds` times in a row. */
export interface RunCommand {
  targets: Target[];
  tasks: number;
  /** Fan-outs in a row, timed together, so that a short one is not all noise. @default {1} */
  rounds?: number;
}

/** Where the slowest task's time went, in milliseconds. */
export interface Stages {
  /** From handing the request to the broker to its publisher confirm. */
  publish_to_confirm: number;
  /** From handing it to the broker to the worker taking it (the worker's clock). */
  publish_to_start: number;
  /** The worker's time on it, beyond the work it was asked to do. */
  worker_beyond_work: number;
  /** From the worker finishing to the reply reaching the caller. */
  reply_to_caller: number;
  /** The run's wall time not spent on the slowest task's round trip. */
  scheduling: number;
}

/** Streams `count` calls of `target` with `window` in flight. */
export interface StreamCommand {
  kind: "stream";
  target: Target;
  count: number;
  window: number;
}

/** What a stream measured. */
export interface StreamSample {
  ms: number;
  tps: number;
  /** The client process's peak resident memory so far (VmHWM), in MiB. */
  peak_rss_mb: number;
}

/** Starts calls of `target` at `rate` per second for `durationMs`, whatever the replies. */
export interface OpenLoopCommand {
  kind: "open";
  target: Target;
  rate: number;
  durationMs: number;
}

/** What an open loop measured: latencies in ms, from each call's due time to its end. */
export interface OpenLoopSample {
  sent: number;
  /** Calls ended per second, over the run. */
  tps: number;
  p50: number;
  p99: number;
  max: number;
}

/** What a run measured. */
export interface RunSample {
  ms: number;
  tps: number;
  rss_mb: number;
  heap_mb: number;
  stages?: Stages;
  /** CPU time the caller, the server and the broker spent on the run, in ms (taken around it). */
  cpu_ms?: CpuSnapshot;
}

const mb = (bytes: number) => Math.round(bytes / 1024 / 1024 * 10) / 10;

/** The resident memory now, then the live heap after a full collection (with --expose-gc). */
function memory(): { rss_mb: number; heap_mb: number } {
  const rss = mb(Deno.memoryUsage().rss);
  (globalThis as { gc?: () => void }).gc?.();
  return { rss_mb: rss, heap_mb: mb(Deno.memoryUsage().heapUsed) };
}

/** What a call's stages are read from: the caller's clocks and the worker's. */
interface TimedCall {
  sentAt: number;
  confirmedAt?: number;
  endedAt: number;
  sentWallMs: number;
  endedWallMs: number;
  /** When the worker took it and answered (ms since the epoch). */
  startedWallMs: number;
  finishedWallMs: number;
  /** The worker's time on it. */
  workerMs: number;
}

/** The stages of the task whose reply came last. */
export function stagesOf(slowest: TimedCall, workMs: number, wallMs: number): Stages {
  return {
    publish_to_confirm: (slowest.confirmedAt ?? slowest.endedAt) - slowest.sentAt,
    publish_to_start: Math.max(0, slowest.startedWallMs - slowest.sentWallMs),
    worker_beyond_work: Math.max(0, slowest.workerMs - workMs),
    reply_to_caller: Math.max(0, slowest.endedWallMs - slowest.finishedWallMs),
    scheduling: Math.max(0, wallMs - (slowest.endedAt - slowest.sentAt)),
  };
}

/** A product call's timestamps, from its reply. */
function productTimes(outcome: CallOutcome & { confirmedAt?: number }): TimedCall | undefined {
  if (outcome.kind !== "reply") return undefined;
  return {
    ...outcome,
    startedWallMs: Date.parse(outcome.reply.started_at),
    finishedWallMs: Date.parse(outcome.reply.finished_at),
    workerMs: outcome.reply.duration_ms,
  };
}

/** A bare echo call's timestamps, from its reply. */
function echoTimes(call: EchoCall): TimedCall {
  const { started_at, finished_at } = JSON.parse(new TextDecoder().decode(call.body));
  return {
    ...call,
    // Whole milliseconds, as the product's ISO 8601 started_at and finished_at.
    startedWallMs: Math.floor(started_at),
    finishedWallMs: Math.floor(finished_at),
    workerMs: finished_at - started_at,
  };
}

async function runBare(client: EchoClient, command: RunCommand): Promise<RunSample> {
  if (command.tasks * command.targets.length <= 8) return await runFewBare(client, command);
  const rounds = command.rounds ?? 1;
  const started = performance.now();
  for (let round = 0; round < rounds; round++) {
    await Promise.all(
      command.targets.map((t) =>
        client.callAll(
          t.queue,
          Array.from({ length: command.tasks }, () => ({ work_ms: t.workMs })),
        )
      ),
    );
  }
  const ms = performance.now() - started;
  return { ms, tps: rounds * command.tasks * command.targets.length / (ms / 1000), ...memory() };
}

async function runProduct(client: TaskClient, command: RunCommand): Promise<RunSample> {
  const count = command.tasks * command.targets.length;
  if (count <= 8) return await runFew(client, command);
  const specs: TaskSpec[] = command.targets.flatMap((t) =>
    Array.from({ length: command.tasks }, () => ({
      label: t.task,
      task: t.task,
      queue: t.queue,
      payload: { work_ms: t.workMs },
      timeoutMs: 120_000,
      retry: {},
      expect: { status: "success" as const },
    }))
  );
  const rounds = command.rounds ?? 1;
  const started = performance.now();
  for (let round = 0; round < rounds; round++) {
    const outcomes = await dispatchAll(client, specs);
    const failed = outcomes.filter((o) => !o.passed);
    if (failed.length > 0) throw new Error(`${failed.length} tasks failed: ${failed[0].problem}`);
  }
  const ms = performance.now() - started;
  return { ms, tps: rounds * count / (ms / 1000), ...memory() };
}

/** A small fan-out (the seed scenario): each call on its own, with its timestamps. */
async function runFew(client: TaskClient, command: RunCommand): Promise<RunSample> {
  const started = performance.now();
  const calls = command.targets.flatMap((t) =>
    Array.from({ length: command.tasks }, async () => {
      let confirmedAt: number | undefined;
      const outcome = await client.request(t.task, { work_ms: t.workMs }, {
        timeoutMs: 120_000,
        onSent: () => confirmedAt = performance.now(),
      });
      if (outcome.kind !== "reply" || outcome.reply.status !== "success") {
        throw new Error(`${t.task} did not succeed: ${JSON.stringify(outcome)}`);
      }
      return { outcome: { ...outcome, confirmedAt }, workMs: t.workMs };
    })
  );
  const done = await Promise.all(calls);
  const ms = performance.now() - started;
  const slowest = done.reduce((a, b) => a.outcome.endedAt >= b.outcome.endedAt ? a : b);
  return {
    ms,
    tps: done.length / (ms / 1000),
    ...memory(),
    stages: ((times) => times && stagesOf(times, slowest.workMs, ms))(
      productTimes(slowest.outcome),
    ),
  };
}

/** A small fan-out of the bare echo, each call timed as the product's are. */
async function runFewBare(client: EchoClient, command: RunCommand): Promise<RunSample> {
  const started = performance.now();
  const done = await Promise.all(
    command.targets.flatMap((t) =>
      Array.from({ length: command.tasks }, async () => ({
        call: echoTimes(await client.call(t.queue, { work_ms: t.workMs })),
        workMs: t.workMs,
      }))
    ),
  );
  const ms = performance.now() - started;
  const slowest = done.reduce((a, b) => a.call.endedAt >= b.call.endedAt ? a : b);
  return {
    ms,
    tps: done.length / (ms / 1000),
    ...memory(),
    stages: stagesOf(slowest.call, slowest.workMs, ms),
  };
}

/** The process's peak resident memory so far, in MiB, from /proc/self/status. */
function peakRssMb(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  return mb(Number(status.match(/^VmHWM:\s+(\d+) kB/m)?.[1]) * 1024);
}

async function runStream(client: TaskClient, command: StreamCommand): Promise<StreamSample> {
  const { target, count, window } = command;
  function* calls() {
    for (let i = 0; i < count; i++) {
      yield { function: target.task, payload: { work_ms: target.workMs }, timeoutMs: 120_000 };
    }
  }
  const started = performance.now();
  let failed = 0;
  for await (const { outcome } of client.stream(calls(), { window })) {
    if (outcome.kind !== "reply" || outcome.reply.status !== "success") failed++;
  }
  const ms = performance.now() - started;
  if (failed > 0) throw new Error(`${failed} streamed calls did not succeed`);
  return { ms, tps: count / (ms / 1000), peak_rss_mb: peakRssMb() };
}

/** The value below which `fraction` of `sorted` lie (nearest rank). */
function rank(sorted: Float64Array, fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))];
}

/**
 * An open loop: calls started on a schedule of `rate` a second, in slices
 * of 5 ms, each timed from when it was due.
 */
async function runOpen(
  call: (target: Target) => Promise<unknown>,
  command: OpenLoopCommand,
): Promise<OpenLoopSample> {
  const { target, rate, durationMs } = command;
  const total = Math.max(1, Math.round(rate * durationMs / 1000));
  const latencies = new Float64Array(total);
  const started = performance.now();
  let sent = 0;
  let ended = 0;
  let failure: unknown;
  let allEnded!: () => void;
  const finished = new Promise<void>((resolve) => allEnded = resolve);
  while (sent < total && failure === undefined) {
    const due = Math.min(total, Math.floor((performance.now() - started) * rate / 1000) + 1);
    while (sent < due) {
      const at = sent;
      const dueAt = started + at * 1000 / rate;
      sent++;
      call(target).then(
        () => latencies[at] = performance.now() - dueAt,
        (error) => failure ??= error,
      ).finally(() => {
        if (++ended === total) allEnded();
      });
    }
    if (sent < total) await new Promise((resolve) => setTimeout(resolve, 5));
  }
  if (failure === undefined) await finished;
  if (failure !== undefined) throw failure;
  const ms = performance.now() - started;
  const sorted = latencies.sort();
  return {
    sent: total,
    tps: total / (ms / 1000),
    p50: rank(sorted, 0.5),
    p99: rank(sorted, 0.99),
    max: sorted[sorted.length - 1],
  };
}

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop()!;
    yield* parts.filter((line) => line.trim() !== "");
  }
}

if (import.meta.main) {
  const [impl, url, ...queues] = Deno.args;
  if ((impl !== "bare" && impl !== "product") || !url) {
    console.error("Usage: deno run -A bench/client.ts <bare|product> <url> [task=queue...]");
    Deno.exit(2);
  }
  const functions = Object.fromEntries(queues.map((pair) => pair.split("=")));
  type Command = RunCommand | StreamCommand | OpenLoopCommand;
  let run: (command: Command) => Promise<unknown>;
  if (impl === "bare") {
    const client = await openEchoClient(url);
    run = (command) => {
      if (!("kind" in command)) return runBare(client, command);
      if (command.kind === "open") {
        return runOpen((t) => client.call(t.queue, { work_ms: t.workMs }), command);
      }
      throw new TypeError(`Cannot run '${command.kind}' on the bare echo`);
    };
  } else {
    const client = await connect({ url, functions, connectionName: "bench" });
    run = (command) => {
      if (!("kind" in command)) return runProduct(client, command);
      if (command.kind === "stream") return runStream(client, command);
      return runOpen(async (t) => {
        const outcome = await client.request(t.task, { work_ms: t.workMs }, { timeoutMs: 120_000 });
        if (outcome.kind !== "reply" || outcome.reply.status !== "success") {
          throw new Error(`${t.task} did not succeed: ${JSON.stringify(outcome)}`);
        }
      }, command);
    };
  }
  console.log(JSON.stringify({ ready: true }));
  for await (const line of lines(Deno.stdin.readable)) {
    console.log(JSON.stringify(await run(JSON.parse(line))));
  }
  Deno.exit(0);
}
