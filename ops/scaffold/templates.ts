/**
 * The first text of a new function's module and of its test: a handler
 * that works for `work_ms` and greets, which the author then replaces.
 *
 * @module
 */

/** A new function: its name and queue, and its schedule if it runs on one. */
export interface NewFunction {
  name: string;
  queue: string;
  /** Topic patterns of the events that run it (`--trigger`). */
  triggers?: string[];
  /** The event type its results are emitted as (`--emits`). */
  emits?: string;
  /** A cron pattern, and the IANA time zone it is read in (UTC unless given). */
  schedule?: { cron: string; timeZone?: string };
}

/** `functions/<name>.ts`. */
export function functionModule(fn: NewFunction): string {
  const scheduled = fn.schedule === undefined ? "" : `
 * It also runs at each tick of its schedule in functions/registry.yaml
 * (\`deno task scheduler\`, docs/schedules.md), with \`context.tick\` the
 * tick's time.`;
  return `/**
 * ${fn.name}: answers "Hello from ${fn.name}" after \`work_ms\` of work (default 0).${scheduled}
 * Made by \`deno task new\`: replace the handler with the function's work.
 *
 * @module
 */

import { defineFunction, simulateWork } from "@task-system/runtime";

export default defineFunction({
  name: "${fn.name}",
  queue: "${fn.queue}",
  async handler(payload, context) {
    await simulateWork(payload, context, 0);
    return "Hello from ${fn.name}";
  },
});
`;
}

/** `functions/<name>_test.ts`: runs the handler as the runtime would, without a broker. */
export function functionTest(fn: NewFunction): string {
  return `import assert from "node:assert/strict";
import { SILENT_LOGGER } from "@task-system/runtime";
import fn from "./${fn.name}.ts";

function contextOf(signal = new AbortController().signal) {
  return {
    taskId: "t1",
    attempt: 1,
    worker: "test",
    deadline: null,
    tick: null,
    signal,
    log: SILENT_LOGGER,
  };
}

Deno.test("${fn.name} answers with its greeting", async () => {
  assert.equal(fn.name, "${fn.name}");
  assert.equal(fn.queue, "${fn.queue}");
  assert.equal(await fn.handler({ work_ms: 1 }, contextOf()), "Hello from ${fn.name}");
});

Deno.test("${fn.name} stops working when its attempt is aborted", async () => {
  const controller = new AbortController();
  const running = fn.handler({ work_ms: 60_000 }, contextOf(controller.signal));
  controller.abort(new Error("stop"));
  await assert.rejects(Promise.resolve(running));
});
`;
}
