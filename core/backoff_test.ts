import assert from "node:assert/strict";
import { backoffDelay, type BackoffPolicy, nominalDelay, RECONNECT_POLICY } from "./backoff.ts";

const POLICY: BackoffPolicy = { baseDelayMs: 100, factor: 2, maxDelayMs: 1000, jitter: 0.2 };

Deno.test("nominalDelay() starts at the base delay and grows by the factor", () => {
  assert.deepEqual([1, 2, 3, 4].map((retry) => nominalDelay(retry, POLICY)), [100, 200, 400, 800]);
  const triple = { ...POLICY, factor: 3, maxDelayMs: 1e9 };
  assert.deepEqual([1, 2, 3].map((retry) => nominalDelay(retry, triple)), [100, 300, 900]);
});

Deno.test("nominalDelay() never exceeds the maximum delay", () => {
  assert.equal(nominalDelay(5, POLICY), 1000);
  assert.equal(nominalDelay(50, POLICY), 1000);
  assert.equal(nominalDelay(5000, POLICY), 1000, "even when the raw delay overflows");
});

Deno.test("nominalDelay() treats retry 0 and below like the first retry", () => {
  assert.equal(nominalDelay(0, POLICY), 100);
  assert.equal(nominalDelay(-3, POLICY), 100);
});

Deno.test("nominalDelay() stays at the base delay with factor 1", () => {
  const flat = { ...POLICY, factor: 1 };
  assert.deepEqual([1, 2, 10].map((retry) => nominalDelay(retry, flat)), [100, 100, 100]);
});

Deno.test("backoffDelay() spreads the nominal delay over ±jitter", () => {
  assert.equal(backoffDelay(1, POLICY, () => 0), 80);
  assert.equal(backoffDelay(1, POLICY, () => 0.5), 100);
  assert.equal(backoffDelay(1, POLICY, () => 1), 120);
  assert.equal(backoffDelay(3, POLICY, () => 0), 320);
  assert.equal(backoffDelay(3, POLICY, () => 1), 480);
});

Deno.test("backoffDelay() applies jitter after the cap", () => {
  assert.equal(backoffDelay(10, POLICY, () => 0), 800);
  assert.equal(backoffDelay(10, POLICY, () => 1), 1200);
});

Deno.test("backoffDelay() gives the nominal delay without jitter", () => {
  const exact = { ...POLICY, jitter: 0 };
  for (const random of [0, 0.3, 0.999]) {
    assert.equal(backoffDelay(2, exact, () => random), 200);
  }
});

Deno.test("backoffDelay() rounds to whole milliseconds", () => {
  const odd = { baseDelayMs: 3, factor: 2, maxDelayMs: 100, jitter: 0.5 };
  assert.equal(backoffDelay(1, odd, () => 0), 2); // 1.5
  assert.equal(backoffDelay(1, odd, () => 0.9), 4); // 4.2
});

Deno.test("backoffDelay() stays within its bounds with Math.random", () => {
  for (let i = 0; i < 1000; i++) {
    const delay = backoffDelay(2, POLICY);
    assert.ok(delay >= 160 && delay <= 240, `${delay}`);
    assert.ok(Number.isInteger(delay));
  }
});

Deno.test("nominalDelay() stays 0 with a base delay of 0, even for late retries", () => {
  const policy: BackoffPolicy = { baseDelayMs: 0, factor: 2, maxDelayMs: 1000, jitter: 0.2 };
  assert.equal(nominalDelay(5000, policy), 0);
  assert.equal(backoffDelay(5000, policy), 0);
});

Deno.test("RECONNECT_POLICY waits 0.5 s, doubling to 15 s, each within ±20%", () => {
  // docs/reliability.md and docs/cluster.md promise these waits between attempts to reach a broker.
  const nominal = [0.5, 1, 2, 4, 8, 15, 15, 15].map((s) => s * 1000);
  const retries = nominal.map((_, i) => i + 1);
  assert.deepEqual(retries.map((retry) => nominalDelay(retry, RECONNECT_POLICY)), nominal);
  const lowest = retries.map((retry) => backoffDelay(retry, RECONNECT_POLICY, () => 0));
  const highest = retries.map((retry) => backoffDelay(retry, RECONNECT_POLICY, () => 1));
  assert.deepEqual(lowest, nominal.map((ms) => ms * 0.8));
  assert.deepEqual(highest, nominal.map((ms) => ms * 1.2));
  assert.ok(Object.isFrozen(RECONNECT_POLICY), "no caller can change it for the others");
});
