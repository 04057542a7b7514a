import assert from "node:assert/strict";
import { Fifo } from "./fifo.ts";

Deno.test("Fifo gives items back in the order they came, and undefined once empty", () => {
  const fifo = new Fifo<string>();
  assert.equal(fifo.shift(), undefined);
  fifo.push("a");
  fifo.push("b");
  assert.equal(fifo.length, 2);
  assert.equal(fifo.shift(), "a");
  fifo.push("c");
  assert.deepEqual([fifo.shift(), fifo.shift(), fifo.shift()], ["b", "c", undefined]);
  assert.equal(fifo.length, 0);
});

Deno.test("Fifo keeps its order and length across the compactions of a long run", () => {
  const fifo = new Fifo<number>();
  let next = 0;
  let expected = 0;
  // Enough shifts to compact its storage several times, with items always waiting.
  for (let round = 0; round < 10; round++) {
    for (let i = 0; i < 3000; i++) fifo.push(next++);
    for (let i = 0; i < 2500; i++) assert.equal(fifo.shift(), expected++);
    assert.equal(fifo.length, next - expected);
  }
  while (fifo.length > 0) assert.equal(fifo.shift(), expected++);
  assert.equal(expected, next);
});
