import assert from "node:assert/strict";
import { InvalidPayloadError, NonRetryableError, type TaskContext } from "./define_function.ts";
import { SILENT_LOGGER } from "../core/log.ts";
import { MAX_WORK_MS, SimulatedFailure, simulateWork } from "./simulate_work.ts";

function context(attempt: number, signal = new AbortController().signal): TaskContext {
  return {
    taskId: "id-1",
    attempt,
    worker: "w1",
    deadline: null,
    tick: null,
    signal,
    log: SILENT_LOGGER,
  };
}

Deno.test("simulateWork() fails attempts up to fail_attempts with SimulatedFailure", async () => {
  for (const attempt of [1, 2]) {
    await assert.rejects(
      simulateWork({ fail_attempts: 2, work_ms: 0 }, context(attempt), 0),
      (error) => {
        assert.ok(error instanceof SimulatedFailure);
        assert.ok(!(error instanceof NonRetryableError), "a simulated failure is retried");
        assert.equal(error.name, "SimulatedFailure");
        assert.equal(
          error.message,
          `Failing attempt ${attempt} as the payload asks the first 2 to fail`,
        );
        return true;
      },
    );
  }
  await simulateWork({ fail_attempts: 2, work_ms: 0 }, context(3), 0);
});

Deno.test("simulateWork() fails no attempt when fail_attempts is 0 or absent", async () => {
  await simulateWork({ fail_attempts: 0 }, context(1), 0);
  await simulateWork({}, context(1), 0);
});

Deno.test("simulateWork() waits work_ms, else the default", async () => {
  let started = performance.now();
  await simulateWork({ work_ms: 30 }, context(1), 0);
  assert.ok(performance.now() - started >= 25, "waits work_ms");
  started = performance.now();
  await simulateWork({}, context(1), 30);
  assert.ok(performance.now() - started >= 25, "waits the default");
  // Timers fire in the order of their deadlines, however loaded the machine:
  // waiting the default (5000 ms) would lose to a 1000 ms timer.
  const zero = simulateWork({ work_ms: 0 }, context(1), 5000).then(() => "work_ms 0");
  const timer = new Promise((resolve) => setTimeout(() => resolve("1000 ms timer"), 1000));
  assert.equal(await Promise.race([zero, timer]), "work_ms 0", "work_ms 0 overrides the default");
  await timer;
});

Deno.test("simulateWork() refuses a bad work_ms with InvalidPayload naming the field", async () => {
  for (const work_ms of [-1, 1.5, "100", null, true, MAX_WORK_MS + 1]) {
    await assert.rejects(simulateWork({ work_ms }, context(1), 0), (error) => {
      assert.ok(error instanceof InvalidPayloadError);
      assert.ok(error instanceof NonRetryableError);
      assert.equal(error.name, "InvalidPayload");
      assert.equal(
        error.message,
        `Cannot run as 'payload.work_ms' is ${
          JSON.stringify(work_ms)
        }: send a whole number from 0 to ${MAX_WORK_MS}`,
      );
      return true;
    }, JSON.stringify(work_ms));
  }
});

Deno.test("simulateWork() refuses a bad fail_attempts with InvalidPayload naming the field", async () => {
  for (const fail_attempts of [-1, 1001, "2"]) {
    await assert.rejects(simulateWork({ fail_attempts }, context(1), 0), {
      name: "InvalidPayload",
      message: new RegExp(`'payload\\.fail_attempts' is .*: send a whole number from 0 to 1000$`),
    });
  }
});

Deno.test("simulateWork() checks the payload before it fails an attempt on purpose", async () => {
  await assert.rejects(
    simulateWork({ fail_attempts: 3, work_ms: -5 }, context(1), 0),
    InvalidPayloadError,
  );
});

Deno.test("simulateWork() stops waiting when its signal is aborted", async () => {
  const controller = new AbortController();
  const work = simulateWork({ work_ms: 50 }, context(1, controller.signal), 0);
  const reason = new Error("worker stopping");
  controller.abort(reason);
  // Settled at the abort itself, before any timer, even one of 0 ms set after it.
  const stopped = work.then(() => "finished", (error) => error === reason ? "stopped" : error);
  const timer = new Promise((resolve) => setTimeout(() => resolve("a later timer"), 0));
  assert.equal(await Promise.race([stopped, timer]), "stopped", "returned before work_ms");
  await timer;
});

Deno.test("simulateWork() does not start waiting on an aborted signal", async () => {
  const controller = new AbortController();
  controller.abort();
  await assert.rejects(
    simulateWork({ work_ms: 50 }, context(1, controller.signal), 0),
    { name: "AbortError" },
  );
});
