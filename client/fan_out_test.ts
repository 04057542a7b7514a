import assert from "node:assert/strict";
import { fanOut } from "./fan_out.ts";

Deno.test("fanOut() starts one slice now and the rest on later turns, all before any ends, in order", async () => {
  let started = 0;
  const allStarted = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const results = fanOut(Array.from({ length: 10 }, (_, i) => i), async (i) => {
    if (++started === 10) allStarted.resolve();
    await release.promise;
    return i * 2;
  }, 4);
  assert.equal(started, 4, "the first slice starts at once, the rest wait for a turn");
  await allStarted.promise;
  release.resolve();
  assert.deepEqual(await results, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
});

Deno.test("fanOut() rejects with a call's failure, even one that fails before the last slice starts", async () => {
  await assert.rejects(
    fanOut(
      [1, 2, 3, 4, 5],
      (i) => i === 1 ? Promise.reject(new Error("first")) : Promise.resolve(i),
      2,
    ),
    /first/,
  );
});
