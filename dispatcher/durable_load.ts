/**
 * `deno task load --name`: a load test whose calls outlive the tool. Its
 * calls are submitted by a named caller (`connect({ name })`), with ids
 * made from the name and their number (`<name>.<n>`), and collected into a
 * journal; killed and run again with the same name, it learns from its
 * queue which calls it had submitted and from its journal which it had
 * collected, submits only the others, and collects each outcome once. No
 * call is sent twice, so none runs twice for the restart.
 *
 * @module
 */

import type { CallOutcome, TaskReply } from "../client/mod.ts";
import type { TaskClient } from "../client/task_client.ts";
import { latencyOf, type LoadOptions, type LoadProgress, type LoadResult } from "./load.ts";

/** Options for {@linkcode runDurableLoad}. */
export interface DurableLoadOptions extends Omit<LoadOptions, "rate"> {
  /** The caller's name: its calls are `<name>.0` to `<name>.<tasks - 1>`. */
  name: string;
  /** The client's journal, whose outcomes of earlier runs count in the figures. */
  journal: string;
}

/** The figures of a durable run, with what it found of the runs before it. */
export interface DurableLoadResult extends LoadResult {
  resumed: {
    /** Calls an earlier run had collected (the journal). */
    collectedBefore: number;
    /** Calls an earlier run had submitted and not collected (the queue). */
    outstandingBefore: number;
    /** Calls this run submitted. */
    submitted: number;
  };
}

/** The id of call `n` of the run `name`. */
export function durableCallId(name: string, n: number): string {
  return `${name}.${n}`;
}

/** Runs (or resumes) a durable load test; rejects only if the broker fails. */
export async function runDurableLoad(
  client: Pick<TaskClient, "submit" | "results" | "status" | "outstanding">,
  options: DurableLoadOptions,
): Promise<DurableLoadResult> {
  const started = performance.now();
  const ids = Array.from({ length: options.tasks }, (_, n) => durableCallId(options.name, n));
  const mine = new Set(ids);
  const outstanding = (await client.outstanding()).filter((id) => mine.has(id));
  const collectedBefore = ids.filter((id) => client.status(id).state === "collected").length;
  const toSubmit = ids.flatMap((id, n) => client.status(id).state === "unknown" ? [n] : []);

  const latencies: number[] = [];
  const perWorker: Record<string, number> = {};
  const errors: Record<string, number> = {};
  let timeouts = 0;
  let retries = 0;
  let succeeded = 0;
  let done = collectedBefore;
  let inFlight = outstanding.length;
  let sent = collectedBefore + outstanding.length;
  let lastEnd: number | undefined;
  let longestGapMs = 0;
  let room: (() => void) | undefined;

  const record = (outcome: CallOutcome) => {
    done++;
    inFlight--;
    room?.();
    const ended = performance.now();
    if (lastEnd !== undefined) longestGapMs = Math.max(longestGapMs, ended - lastEnd);
    lastEnd = ended;
    latencies.push(outcome.endedWallMs - outcome.sentWallMs);
    count(outcome);
  };
  function count(outcome: { kind: string; reply?: TaskReply }) {
    if (outcome.kind === "timeout" || !outcome.reply) return void timeouts++;
    const { reply } = outcome;
    perWorker[reply.worker] = (perWorker[reply.worker] ?? 0) + 1;
    retries += Math.max(0, reply.attempts - 1);
    if (reply.status === "success") succeeded++;
    else {
      const type = reply.error?.type ?? "Error";
      errors[type] = (errors[type] ?? 0) + 1;
    }
  }
  // What the runs before this one collected counts too (not in the latencies: their clocks are gone).
  for (const outcome of await journaledOutcomes(options.journal, mine)) {
    count(outcome);
  }
  const progress = () =>
    options.onProgress?.(
      {
        sent,
        done,
        errors: done - succeeded,
        elapsedMs: performance.now() - started,
      } satisfies LoadProgress,
    );
  const ticker = options.onProgress ? setInterval(progress, options.progressMs ?? 250) : undefined;

  // At most `concurrency` calls submitted and not collected at once.
  const submitting = (async () => {
    const confirms: Promise<string>[] = [];
    for (const [i, n] of toSubmit.entries()) {
      while (inFlight >= options.concurrency) {
        await new Promise<void>((resolve) => room = resolve);
        room = undefined;
      }
      inFlight++;
      sent++;
      const target = options.targets[n % options.targets.length];
      const confirm = client.submit(target, options.payload, {
        taskId: ids[n],
        timeoutMs: options.timeoutMs,
      });
      confirm.catch(() => {});
      confirms.push(confirm);
      // A turn now and then, so that the first requests leave while the rest are made.
      if (i % 128 === 127) await new Promise((resolve) => setTimeout(resolve, 0));
    }
    await Promise.all(confirms);
  })();
  // A submission the broker refused ends the run: the race below rejects with it.
  const failed = submitting.then(() => new Promise<never>(() => {}));
  failed.catch(() => {});
  const outcomes = client.results();
  try {
    while (done < options.tasks) {
      const next = await Promise.race([outcomes.next(), failed]);
      if (next.done) break;
      if (mine.has(next.value.taskId)) record(next.value);
    }
    await submitting;
  } finally {
    clearInterval(ticker);
    await outcomes.return();
  }
  progress();
  const durationMs = performance.now() - started;
  const round = (value: number) => Math.round(value * 100) / 100;
  const ran = Math.max(1, options.tasks - collectedBefore);
  return {
    tasks: options.tasks,
    succeeded,
    errors,
    timeouts,
    retries,
    durationMs: round(durationMs),
    throughput: round(ran / (durationMs / 1000)),
    latencyMs: latencyOf(latencies),
    perWorker,
    longestGapMs: round(longestGapMs),
    resumed: {
      collectedBefore,
      outstandingBefore: outstanding.length,
      submitted: toSubmit.length,
    },
  };
}

/** The outcomes a journal holds of the calls `ids`, each once. */
async function journaledOutcomes(
  path: string,
  ids: ReadonlySet<string>,
): Promise<{ kind: string; reply?: TaskReply }[]> {
  let text = "";
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const seen = new Map<string, { kind: string; reply?: TaskReply }>();
  for (const line of text.split("\n")) {
    try {
      const { id, outcome } = JSON.parse(line);
      if (ids.has(id) && typeof outcome?.kind === "string") seen.set(id, outcome);
    } catch {
      // Empty, or cut short by a crash: not collected.
    }
  }
  return [...seen.values()];
}
