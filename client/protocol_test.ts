import assert from "node:assert/strict";
import { isExpectedSender } from "./protocol.ts";

Deno.test("isExpectedSender() believes the function's workers' user and the caller's own", () => {
  assert.equal(isExpectedSender("task_a", "task_a", "dispatcher"), true);
  assert.equal(isExpectedSender("dispatcher", "task_a", "dispatcher"), true);
  assert.equal(isExpectedSender("task_b", "task_a", "dispatcher"), false);
  assert.equal(isExpectedSender("guest", "task_a", "dispatcher"), false);
});

Deno.test("isExpectedSender() takes answers without user_id only on a guest connection", () => {
  assert.equal(isExpectedSender(undefined, "task_a", "guest"), true);
  assert.equal(isExpectedSender(undefined, "task_a", "dispatcher"), false);
  assert.equal(isExpectedSender("guest", "task_a", "guest"), true, "everyone is guest");
});
