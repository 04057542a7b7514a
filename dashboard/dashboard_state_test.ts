import assert from "node:assert/strict";
import { MemoryBroker } from "../core/broker/mod.ts";
import { DashboardState } from "./dashboard_state.ts";
import { DeadLetterDesk, LETTERS_SHOWN } from "./dead_letter_desk.ts";
import { SseHub } from "./sse.ts";

const FUNCTIONS = new Map([
  ["task_a", { queue: "queue_a", user: "task_a" }],
  ["task_b", { queue: "queue_b", user: "task_b" }],
]);

/** Bytes of `state` a function's row may take with its letters at their longest. */
const MAX_FUNCTION_STATE_BYTES = 100_000;

Deno.test("forged dead letters of 100 KB of control characters keep the state bounded and the pages connected", async () => {
  const broker = new MemoryBroker();
  const sse = new SseHub();
  const desk = new DeadLetterDesk(() => Promise.resolve(broker.connect("operator")));
  const state = new DashboardState({ functions: FUNCTIONS, broker: "memory", hub: sse, desk });
  const reader = sse.open(state.opening(), {}).body!.pipeThrough(new TextDecoderStream())
    .getReader();
  try {
    const forger = broker.connect("dispatcher");
    const junk = "\u0001".repeat(100_000);
    const sequences = "\u001b]0;PWNED\u0007\u001b[2J\u001b[HAll clear\u001b[8m";
    for (const queue of ["queue_a", "queue_b"]) {
      await forger.declareQueue(`${queue}.dlq`);
      for (let i = 0; i <= LETTERS_SHOWN; i++) {
        await forger.publish(`${queue}.dlq`, {
          body: new TextEncoder().encode(sequences + junk),
          properties: {
            messageId: `forged-${i}`,
            headers: {
              "x-dlq-reason": junk,
              "x-dlq-error-type": junk,
              "x-dlq-error-message": sequences + junk,
              "x-dlq-worker": junk,
              "x-dlq-sender": junk,
              "x-dlq-at": junk,
            },
          },
        });
      }
      await desk.refresh(queue);
    }
    const snapshot = state.snapshot();
    assert.equal(snapshot.functions[0].letters.length, LETTERS_SHOWN);
    const bytes = new TextEncoder().encode(JSON.stringify(snapshot)).byteLength;
    assert.ok(
      bytes < FUNCTIONS.size * MAX_FUNCTION_STATE_BYTES,
      `the state takes ${bytes} bytes`,
    );
    // Each push reaches the connected page, which stays connected.
    let text = "";
    for (let push = 0; push < 3; push++) {
      state.changed();
      const before = (text.match(/^event: state$/gm) ?? []).length;
      while ((text.match(/^event: state$/gm) ?? []).length <= before) {
        const { value, done } = await reader.read();
        assert.ok(!done, "the stream is still open");
        text += value;
      }
    }
    assert.equal(sse.size, 1);
    const last = JSON.parse(text.trimEnd().split("\n").filter((l) => l.startsWith("data: ")).at(-1)!
      .slice(6));
    assert.ok(last.functions[0].letters[0].errorMessage.startsWith("\u001b]0;PWNED"));
  } finally {
    await reader.cancel();
    state.close();
    sse.close();
    await desk.close();
    await broker.shutdown();
  }
});

Deno.test("DashboardState.snapshot() shows each function's schedule and the replica that fires", () => {
  const state = new DashboardState({
    functions: FUNCTIONS,
    schedules: new Map([["task_b", "0 3 * * * (Europe/Berlin)"]]),
    broker: "memory",
    hub: new SseHub(),
  });
  try {
    assert.equal(state.snapshot().scheduler, null);
    assert.deepEqual(state.snapshot().functions.map((f) => [f.function, f.schedule]), [
      ["task_a", null],
      ["task_b", "0 3 * * * (Europe/Berlin)"],
    ]);
    state.onScheduler({
      scheduler: "scheduler@host-1",
      since: "2026-11-29T06:00:00.000Z",
      functions: ["task_b"],
    });
    const { scheduler } = state.snapshot();
    assert.equal(scheduler?.scheduler, "scheduler@host-1");
    assert.ok(Date.parse(scheduler!.seen) > 0);
  } finally {
    state.close();
  }
});

Deno.test("DashboardState's snapshot shows each function's triggers, none where it has none", () => {
  const state = new DashboardState({
    functions: FUNCTIONS,
    triggers: new Map([["task_a", ["order.created", "order.*"]]]),
    broker: "memory",
    hub: new SseHub(),
  });
  const byName = new Map(state.snapshot().functions.map((f) => [f.function, f.triggers]));
  assert.deepEqual(byName.get("task_a"), ["order.created", "order.*"]);
  assert.deepEqual(byName.get("task_b"), []);
});
