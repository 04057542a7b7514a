import assert from "node:assert/strict";
import { maskUrl, redactPassword, splitUrls, userOfUrl } from "./url.ts";

Deno.test("maskUrl() hides the password and keeps the rest", () => {
  assert.equal(maskUrl("amqp://task_a:s3cret@rabbitmq:5672"), "amqp://task_a:***@rabbitmq:5672");
  assert.equal(maskUrl("amqps://dispatcher@localhost:5671"), "amqps://dispatcher@localhost:5671");
  assert.equal(maskUrl("amqp://u:p@ss@host"), "amqp://u:***@host");
});

Deno.test("maskUrl() hides passwords made of every character a URL treats specially", () => {
  for (const password of ["a/b", "a/b@c", "p#w?x", "x:y/z", "%zz", "a b", "é/ü@", "/@/@/"]) {
    const masked = maskUrl(`amqp://dispatcher:${password}@broker.example:5672/vhost`);
    assert.equal(masked, "amqp://dispatcher:***@broker.example:5672/vhost", password);
  }
  assert.equal(
    maskUrl("amqp://a:x/y@h1:5672,amqp://b:z@w@h2:5672"),
    "amqp://a:***@h1:5672,amqp://b:***@h2:5672",
  );
  assert.equal(maskUrl("not a url"), "not a url");
});

Deno.test("redactPassword() removes the raw and the decoded password from any text", () => {
  const url = `amqp://task_a:${encodeURIComponent("a/b@c%d")}@rabbitmq:5672`;
  const text = `failed for a/b@c%d and ${encodeURIComponent("a/b@c%d")} at ${url}`;
  const redacted = redactPassword(text, url);
  assert.ok(!redacted.includes("a/b@c%d"), redacted);
  assert.ok(!redacted.includes(encodeURIComponent("a/b@c%d")), redacted);
  assert.equal(redacted, "failed for *** and *** at amqp://task_a:***@rabbitmq:5672");
  const raw = "amqp://u:s3c/re#t@host:5672";
  assert.equal(redactPassword("oops s3c/re#t", raw), "oops ***");
});

Deno.test("redactPassword() leaves text alone without a password or with a very short one", () => {
  assert.equal(redactPassword("nothing to hide", "amqp://host:5672"), "nothing to hide");
  assert.equal(redactPassword("a bad day", "amqp://u:a@host"), "a bad day");
  assert.equal(redactPassword("text", "not a url"), "text");
});

Deno.test("splitUrls() and userOfUrl() read a list of nodes and the user of each", () => {
  assert.deepEqual(splitUrls("amqp://h1:5672, amqp://h2:5672,"), [
    "amqp://h1:5672",
    "amqp://h2:5672",
  ]);
  assert.deepEqual(splitUrls(" , "), []);
  assert.equal(userOfUrl("amqp://task_a@h"), "task_a");
  assert.equal(userOfUrl("amqp://h"), "guest");
});
