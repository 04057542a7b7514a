/**
 * What the sandbox costs a task: a function's handler run through its
 * sandbox (a Web Worker with no permissions, messages in batches) against
 * the same handler called in this isolate, in one process, in turns. The
 * difference is the price of a handler that cannot reach the worker's
 * connection or credentials (docs/security.md, "The worker sandbox").
 *
 * @module
 */

import { SILENT_LOGGER } from "../core/log.ts";
import type { FunctionDefinition } from "../runtime/define_function.ts";
import type { HandlerRun } from "../runtime/attempt.ts";
import { type HandlerRunner, runHandler } from "../runtime/handler_runner.ts";
import { startSandbox } from "../runtime/sandbox/sandbox.ts";
import { median, round } from "./stats.ts";

/** Microseconds of wall time per task through each runner, and their difference. */
export interface SandboxCost {
  sandbox_us_per_task: number;
  in_process_us_per_task: number;
  cost_us_per_task: number;
}

const LIMIT = { ms: 60_000, type: "TaskTimeout", message: "timed out" };

type Run = Pick<HandlerRunner, "run">;

/** The least a worker without a sandbox would do: call the handler here. */
function direct(definition: FunctionDefinition): Run {
  const never = new AbortController().signal;
  return {
    run: (run: HandlerRun) => runHandler(definition, run, () => never, () => SILENT_LOGGER),
  };
}

/** Runs `tasks` no-op attempts, `concurrency` at a time; resolves with µs per task. */
async function timeRuns(runner: Run, tasks: number, concurrency: number) {
  let next = 0;
  const started = performance.now();
  const lane = async () => {
    while (next < tasks) {
      const id = ++next;
      const outcome = await runner.run(
        {
          id,
          payload: { work_ms: 0 },
          taskId: `t${id}`,
          attempt: 1,
          worker: "bench",
          deadline: null,
        },
        LIMIT,
        () => SILENT_LOGGER,
      );
      if (!outcome.ok) throw new Error(`A no-op attempt failed: ${outcome.error.message}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return (performance.now() - started) * 1000 / tasks;
}

/** Measures {@linkcode SandboxCost} over `rounds` turns of `tasks` tasks each. */
export async function measureSandboxCost(
  rounds: number,
  tasks = 5000,
  concurrency = 256,
): Promise<SandboxCost> {
  const module = new URL("../functions/task_a.ts", import.meta.url);
  const sandbox = await startSandbox({ module, log: SILENT_LOGGER });
  const inProcess = direct((await import(module.href)).default);
  try {
    const sandboxed: number[] = [];
    const direct: number[] = [];
    // One untimed turn each warms both up.
    for (let round = -1; round < rounds; round++) {
      const s = await timeRuns(sandbox, tasks, concurrency);
      const d = await timeRuns(inProcess, tasks, concurrency);
      if (round >= 0) sandboxed.push(s), direct.push(d);
    }
    const s = median(sandboxed);
    const d = median(direct);
    return {
      sandbox_us_per_task: round(s, 1),
      in_process_us_per_task: round(d, 1),
      cost_us_per_task: round(s - d, 1),
    };
  } finally {
    await sandbox.close();
  }
}
