import assert from "node:assert/strict";
import { maskUrl, redactPassword } from "./broker.ts";

Deno.test("maskUrl() hides the password and keeps the rest", () => {
  assert.equal(maskUrl("amqp://task_a:s3cret@rabbitmq:5672"), "amqp://task_a:***@rabbitmq:5672");
  assert.equal(maskUrl("amqps://dispatcher@localhost:5671"), "amqps://dispatcher@localhost:5671");
  assert.equal(maskUrl("amqp://u:p@ss@host"), "amqp://u:***@host");
});

Deno.test("redactPassword() removes the raw and the decoded password from any text", () => {
  const url = `amqp://task_a:${encodeURIComponent("a/b@c%d")}@rabbitmq:5672`;
  const text = `failed for a/b@c%d and ${encodeURIComponent("a/b@c%d")} at ${url}`;
  const redacted = redactPassword(text, url);
  assert.ok(!redacted.includes("a/b@c%d"), redacted);
  assert.ok(!redacted.includes(encodeURIComponent("a/b@c%d")), redacted);
  assert.equal(redacted, "failed for *** and *** at amqp://task_a:***@rabbitmq:5672");
});

Deno.test("redactPassword() leaves text alone without a password or with a very short one", () => {
  assert.equal(redactPassword("nothing to hide", "amqp://host:5672"), "nothing to hide");
  assert.equal(redactPassword("a bad day", "amqp://u:a@host"), "a bad day");
  assert.equal(redactPassword("text", "not a url"), "text");
});
