/**
 * A sandbox takes one batch of tasks at a time, so that the tasks behind a
 * handler that holds its thread wait in the runtime, which can say so and
 * hand them to another replica (`runtime/worker/step_down.ts`).
 */

import assert from "node:assert/strict";
import { createLogger } from "../../core/log.ts";
import type { HandlerOutcome } from "../attempt.ts";
import type { HeldEvent } from "../handler_runner.ts";
import { type SandboxIsolation, startSandbox } from "./sandbox.ts";
import { waitFor } from "../../tests/_helpers.ts";

const escape = new URL("../../tests/fixtures/functions/escape.ts", import.meta.url);
const log = createLogger({ level: "error", write: () => {} });

let nextId = 1;
function run(
  sandbox: Awaited<ReturnType<typeof startSandbox>>,
  payload: Record<string, unknown>,
): Promise<HandlerOutcome> {
  const id = nextId++;
  return sandbox.run(
    { id, payload, taskId: `t${id}`, attempt: 1, worker: "w", deadline: null },
    { ms: 5000, type: "TaskTimeout", message: "timed out" },
    () => log,
  );
}

for (const isolation of ["thread", "process"] as const satisfies SandboxIsolation[]) {
  Deno.test(`a task behind a handler that holds the sandbox waits outside it, is reported, and returnQueued() hands it back unstarted (${isolation})`, async () => {
    const sandbox = await startSandbox({ module: escape, log, isolation });
    const events: HeldEvent[] = [];
    sandbox.watchHeld((event) => events.push(event));
    try {
      // Holds the sandbox's thread far beyond HELD_AFTER_MS.
      const spin = run(sandbox, { attempt: "spin", target: "1500" });
      await waitFor(() => sandbox.batchesSent === 1, "the spin task sent");
      const behind = run(sandbox, {});
      await waitFor(() => events.some((event) => event.held), "the sandbox reported held", 1400);
      assert.equal(sandbox.returnQueued(), 1, "the task behind it never reached the sandbox");
      const outcome = await behind;
      assert.equal(outcome.ok, false);
      assert.ok(!outcome.ok && outcome.requeue === "hand_back", JSON.stringify(outcome));
      assert.ok(!outcome.ok && outcome.error.type === "SandboxBusy");
      assert.equal((await spin).ok, true);
      await waitFor(() => events.length === 2, "the sandbox said it is free");
      assert.deepEqual(events, [{ held: true }, { held: false, byHandler: true }]);
      // And it serves what comes next.
      assert.deepEqual(await run(sandbox, {}), { ok: true, resultJson: '"served"' });
    } finally {
      await sandbox.close();
    }
  });
}

Deno.test("tasks sent in one turn go to the sandbox as one batch, and a burst behind it as the next", async () => {
  const sandbox = await startSandbox({ module: escape, log });
  const events: HeldEvent[] = [];
  sandbox.watchHeld((event) => events.push(event));
  try {
    const first = Array.from({ length: 50 }, () => run(sandbox, {}));
    const second = Array.from({ length: 50 }, () => run(sandbox, {}));
    for (const outcome of await Promise.all([...first, ...second])) {
      assert.deepEqual(outcome, { ok: true, resultJson: '"served"' });
    }
    // Sent in the same turn: one batch. None waited long enough to count as held.
    assert.equal(sandbox.batchesSent, 1);
    const burst = await Promise.all(Array.from({ length: 200 }, () => run(sandbox, {})));
    assert.ok(burst.every((outcome) => outcome.ok));
    assert.equal(sandbox.batchesSent, 2);
    assert.deepEqual(events, [], "no-op tasks never hold the sandbox");
  } finally {
    await sandbox.close();
  }
});
