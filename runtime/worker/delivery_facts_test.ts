import assert from "node:assert/strict";
import type { Delivery } from "../../core/broker/broker.ts";
import { RETRY_DELAYS_MS } from "../../core/contract/mod.ts";
import { DEFAULT_RETRY_POLICY } from "../define_function.ts";
import { deliveriesOf, etaHop, JITTER_STEPS, jitteredDelay, retryDelay } from "./delivery_facts.ts";

function delivery(properties: Delivery["properties"]): Delivery {
  return {
    body: new Uint8Array(),
    properties,
    queue: "queue_a",
    exchange: "",
    routingKey: "queue_a",
    redelivered: false,
    tag: 1,
  };
}

Deno.test("jitteredDelay() takes 21 evenly spaced steps over ±jitter", () => {
  const policy = { ...DEFAULT_RETRY_POLICY, baseDelayMs: 1_000, jitter: 0.2 };
  const seen = new Set<number>();
  for (let i = 0; i < 10_000; i++) seen.add(jitteredDelay(1, policy, () => i / 10_000));
  seen.add(jitteredDelay(1, policy, () => 0.999_999_9));
  assert.equal(JITTER_STEPS + 1, 21);
  assert.deepEqual(
    [...seen].sort((a, b) => a - b),
    Array.from({ length: 21 }, (_, k) => 800 + 20 * k),
  );
  // The nominal wait grows by the factor, capped at maxDelayMs.
  assert.equal(jitteredDelay(3, policy, () => 0.5), 4_000);
  assert.equal(jitteredDelay(20, policy, () => 0.5), policy.maxDelayMs);
});

Deno.test("retryDelay() rounds the jittered wait to the nearest delay the function has a queue for", () => {
  const policy = { ...DEFAULT_RETRY_POLICY, baseDelayMs: 300, factor: 2, jitter: 0.2 };
  // 300 ms ± 20%: 240 to 360 ms, nearest 200 or 300.
  const first = new Set<number>();
  for (let i = 0; i <= 20; i++) first.add(retryDelay(1, policy, () => i / 21));
  assert.deepEqual([...first].sort((a, b) => a - b), [200, 300]);
  for (let retry = 1; retry <= 10; retry++) {
    assert.ok(RETRY_DELAYS_MS.includes(retryDelay(retry, policy)), `retry ${retry}`);
  }
  // Without some delays (queues the worker could not declare), the nearest of the rest.
  assert.equal(retryDelay(1, policy, () => 0.5, [0, 1_000, 5_000]), 0);
  assert.equal(retryDelay(2, policy, () => 0.5, [0, 1_000, 5_000]), 1_000);
});

Deno.test("etaHop() never overshoots an eta, and never spins without a delay", () => {
  assert.equal(etaHop(49_000), 30_000);
  assert.equal(etaHop(20), 20);
  assert.equal(etaHop(3), 5, "the shortest delay, not none");
  assert.equal(etaHop(7 * 86_400_000), 86_400_000, "a day at a time");
  assert.equal(etaHop(3, [0, 1_000]), 1_000);
});

Deno.test("deliveriesOf() adds the failed deliveries a handed-back copy carries, from the worker's own user only", () => {
  assert.equal(deliveriesOf(delivery({})), 0);
  assert.equal(deliveriesOf(delivery({ headers: { "x-delivery-count": 3 } })), 3);
  const copy = { userId: "task_a", headers: { "x-delivery-count": 1, "x-prior-deliveries": 2 } };
  assert.equal(deliveriesOf(delivery(copy), "task_a"), 3);
  assert.equal(deliveriesOf(delivery({ ...copy, userId: "dispatcher" }), "task_a"), 1, "forged");
  assert.equal(deliveriesOf(delivery(copy)), 1, "no worker user given");
  const junk = { userId: "task_a", headers: { "x-prior-deliveries": "many" } };
  assert.equal(deliveriesOf(delivery(junk), "task_a"), 0);
});
