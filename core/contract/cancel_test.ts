import assert from "node:assert/strict";
import {
  CANCEL_MESSAGE_TYPE,
  encodeCancel,
  encodeCancelAnswer,
  mayCancel,
  parseCancel,
  parseCancelAnswer,
} from "./mod.ts";

const encoder = new TextEncoder();
const raw = (body: unknown) => ({
  body: encoder.encode(typeof body === "string" ? body : JSON.stringify(body)),
  properties: {},
});

Deno.test("encodeCancel() and parseCancel() carry a call's id and until when it holds", () => {
  const message = encodeCancel("call-1", { replyTo: "amq.rabbitmq.reply-to", until: 1234.4 });
  assert.equal(message.properties.type, CANCEL_MESSAGE_TYPE);
  assert.deepEqual(parseCancel(message), {
    ok: true,
    value: { kind: "cancel", task_id: "call-1", until: 1234 },
  });
  assert.throws(() => encodeCancel(""), RangeError);
  assert.throws(() => encodeCancel("x".repeat(256)), /1 to 255 characters/);
});

Deno.test("parseCancel() refuses anything but a bounded cancellation, whoever wrote it", () => {
  for (
    const body of [
      "{oops",
      [],
      { kind: "ping" },
      { kind: "cancel" },
      { kind: "cancel", task_id: "" },
      { kind: "cancel", task_id: 7 },
      { kind: "cancel", task_id: "x".repeat(256) },
      { kind: "cancel", task_id: "a", until: -1 },
      { kind: "cancel", task_id: "a", until: "soon" },
      { kind: "cancel", task_id: "a", pad: "x".repeat(5000) },
    ]
  ) {
    const parsed = parseCancel(raw(body));
    assert.equal(parsed.ok, false, JSON.stringify(body).slice(0, 60));
  }
});

Deno.test("mayCancel() lets the call's own user, an operator or the administrator cancel it", () => {
  assert.ok(mayCancel("dispatcher", "dispatcher"));
  assert.ok(mayCancel("operator", "dispatcher"));
  assert.ok(mayCancel("admin", "dispatcher"));
  assert.ok(!mayCancel("task_b", "dispatcher"));
  assert.ok(!mayCancel(undefined, "dispatcher"));
  assert.ok(!mayCancel("dispatcher", undefined), "an unknown sender: operators only");
  assert.ok(mayCancel("operator", undefined));
});

Deno.test("parseCancelAnswer() reads a worker's answer and bounds its text", () => {
  const answer = encodeCancelAnswer({
    kind: "cancel_answer",
    task_id: "t",
    status: "finished",
    worker: "w".repeat(500),
    function: "task_a",
    outcome: "success",
  }, "c");
  const parsed = parseCancelAnswer(answer);
  assert.ok(parsed.ok);
  assert.equal(parsed.value.status, "finished");
  assert.ok(parsed.value.worker.length < 200);
  assert.equal(parseCancelAnswer(raw({ kind: "cancel_answer", status: "won" })).ok, false);
});
