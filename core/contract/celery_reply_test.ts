import assert from "node:assert/strict";
import { CELERY_FAILURE, encodeCeleryReply, parseCeleryReply } from "./mod.ts";

const encoder = new TextEncoder();
const body = (value: unknown) => encoder.encode(JSON.stringify(value));

Deno.test("parseCeleryReply() reads a Celery worker's SUCCESS, as Celery 5 sends it", () => {
  const parsed = parseCeleryReply(body({
    task_id: "t-1",
    status: "SUCCESS",
    result: { answer: 42 },
    traceback: null,
    children: [],
  }));
  assert.ok(parsed.ok, JSON.stringify(parsed));
  assert.deepEqual(parsed.value, {
    taskId: "t-1",
    status: "SUCCESS",
    result: { answer: 42 },
    traceback: null,
  });
});

Deno.test("parseCeleryReply() turns FAILURE, RETRY and REVOKED into task errors", () => {
  const failure = parseCeleryReply(body({
    task_id: "t-2",
    status: "FAILURE",
    result: {
      exc_type: "SimulatedFailure",
      exc_message: ["Failing attempt 1"],
      exc_module: "worker_tasks",
    },
    traceback: "Traceback ...\nSimulatedFailure: Failing attempt 1",
    date_done: "2030-01-01T00:00:00.250000",
  }));
  assert.ok(failure.ok);
  assert.deepEqual(failure.value.error, { type: "SimulatedFailure", message: "Failing attempt 1" });
  assert.equal(failure.value.result, null);
  assert.equal(
    failure.value.dateDone,
    Date.parse("2030-01-01T00:00:00.250Z"),
    "a naive time is UTC",
  );
  const retry = parseCeleryReply(body({
    task_id: "t-2",
    status: "RETRY",
    result: { exc_type: "Retry", exc_message: ["Retry in 1s", 3], exc_module: "celery" },
  }));
  assert.ok(retry.ok);
  assert.deepEqual(retry.value.error, { type: "Retry", message: "Retry in 1s, 3" });
  const bare = parseCeleryReply(body({
    task_id: "t-3",
    status: "FAILURE",
    result: "boom",
    traceback: "Traceback (most recent call last):\n  ...\nValueError: boom\n",
  }));
  assert.ok(bare.ok);
  assert.deepEqual(bare.value.error, { type: CELERY_FAILURE, message: "ValueError: boom" });
});

Deno.test("parseCeleryReply() reads a Deno worker's own Celery reply back", () => {
  const success = parseCeleryReply(
    encodeCeleryReply("c-1", { ok: true, resultJson: '"Hello from Task A"' }).body,
  );
  assert.ok(success.ok);
  assert.equal(success.value.result, "Hello from Task A");
  assert.ok(success.value.dateDone! > 0);
  const failure = parseCeleryReply(
    encodeCeleryReply("c-2", { ok: false, error: { type: "NotSupported", message: "no chain" } })
      .body,
  );
  assert.ok(failure.ok);
  assert.deepEqual(failure.value.error, { type: "NotSupported", message: "no chain" });
});

Deno.test("parseCeleryReply() refuses what is not an rpc:// result, saying which field", () => {
  const cases: [unknown, RegExp][] = [
    [["SUCCESS"], /not an object/],
    [{ status: "SUCCESS", result: 1 }, /'task_id'/],
    [{ task_id: "t", status: "success" }, /'status'/],
    [{ task_id: "t", status: "x".repeat(40) }, /'status'/],
  ];
  for (const [value, pattern] of cases) {
    const parsed = parseCeleryReply(body(value));
    assert.equal(parsed.ok, false, JSON.stringify(value));
    if (!parsed.ok) {
      assert.equal(parsed.error.type, "InvalidReply");
      assert.match(parsed.error.message, pattern);
    }
  }
  const huge = parseCeleryReply(encoder.encode(`"${"x".repeat(100)}"`), { maxBytes: 10 });
  assert.equal(huge.ok, false);
});
