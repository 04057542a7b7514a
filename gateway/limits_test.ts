import assert from "node:assert/strict";
import { BodyError, FailureLimit, jsonDepthOver, readBody, TokenBucket } from "./limits.ts";

Deno.test("TokenBucket.take() allows the burst, then the rate, telling how long to wait", () => {
  let now = 0;
  const bucket = new TokenBucket(2, 3, () => now);
  assert.deepEqual([bucket.take(), bucket.take(), bucket.take()], [0, 0, 0]);
  assert.equal(bucket.take(), 1);
  now = 500; // one token back at 2 a second
  assert.equal(bucket.take(), 0);
  assert.ok(bucket.take() > 0);
  now = 100_000;
  assert.deepEqual([bucket.take(), bucket.take(), bucket.take(), bucket.take() > 0], [
    0,
    0,
    0,
    true,
  ]);
});

Deno.test("jsonDepthOver() counts nesting outside strings only", () => {
  assert.equal(jsonDepthOver('{"a":[1,{"b":2}]}', 3), false);
  assert.equal(jsonDepthOver('{"a":[1,{"b":[]}]}', 3), true);
  assert.equal(jsonDepthOver(JSON.stringify({ s: "[[[[[[[[{{{{{" }), 1), false);
  assert.equal(jsonDepthOver(JSON.stringify({ s: 'a\\"[[[[' }), 1), false);
  assert.equal(jsonDepthOver("[".repeat(33), 32), true);
});

function streamOf(chunks: Uint8Array[], hang = false): ReadableStream<Uint8Array> {
  return new ReadableStream({
    pull(controller) {
      const next = chunks.shift();
      if (next) controller.enqueue(next);
      else if (!hang) controller.close();
    },
  });
}

Deno.test("readBody() reads a body, refuses past the size (413) or the deadline (408)", async () => {
  const ok = new Request("http://x/", {
    method: "POST",
    body: streamOf([new Uint8Array(3), new Uint8Array(2)]),
  });
  assert.equal((await readBody(ok, 5, 1000)).byteLength, 5);
  const big = new Request("http://x/", {
    method: "POST",
    body: streamOf([new Uint8Array(4), new Uint8Array(4)]),
  });
  await assert.rejects(readBody(big, 5, 1000), (e) => e instanceof BodyError && e.status === 413);
  const declared = new Request("http://x/", {
    method: "POST",
    body: "123456",
    headers: { "content-length": "6" },
  });
  await assert.rejects(
    readBody(declared, 5, 1000),
    (e) => e instanceof BodyError && e.status === 413,
  );
  const slow = new Request("http://x/", {
    method: "POST",
    body: streamOf([new Uint8Array(1)], true),
  });
  await assert.rejects(readBody(slow, 5, 50), (e) => e instanceof BodyError && e.status === 408);
});

Deno.test("FailureLimit refuses an address past its failures, for as long as it takes to refill, and no other", () => {
  let now = 0;
  const limit = new FailureLimit({ burst: 3, perSecond: 0.5, now: () => now });
  assert.equal(limit.wait("203.0.113.9"), 0, "an address never seen");
  assert.deepEqual([1, 2, 3].map(() => limit.fail("203.0.113.9")), [false, false, true]);
  assert.equal(limit.wait("203.0.113.9"), 2, "one failure back takes 2 s at 0.5 a second");
  assert.equal(limit.wait("198.51.100.1"), 0, "another address is untouched");
  now = 1_000;
  assert.equal(limit.wait("203.0.113.9"), 1);
  now = 2_000;
  assert.equal(limit.wait("203.0.113.9"), 0);
  assert.equal(limit.fail("203.0.113.9"), true, "the one failure back is used up again");
  assert.ok(limit.wait("203.0.113.9") > 0);
});

Deno.test("FailureLimit remembers at most maxAddresses", () => {
  const limit = new FailureLimit({ burst: 1, perSecond: 0.001, maxAddresses: 2, now: () => 0 });
  for (const address of ["a", "b", "c"]) limit.fail(address);
  assert.equal(limit.wait("a"), 0, "the longest-remembered was forgotten");
  assert.ok(limit.wait("b") > 0 && limit.wait("c") > 0);
});
