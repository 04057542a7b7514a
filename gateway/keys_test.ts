import assert from "node:assert/strict";
import { KeyRing, mayCall, mayEmit, newKey, parseKeysFile } from "./keys.ts";

const SCOPE = { functions: ["task_a"], events: ["order.*"], rate: 5, burst: 10, inFlight: 3 };

Deno.test("newKey() makes a 32-byte secret and stores only its SHA-256", async () => {
  const { key, record } = await newKey(SCOPE);
  const [, id, secret] = /^gw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/.exec(key)!;
  assert.equal(record.id, id);
  assert.ok(!JSON.stringify(record).includes(secret));
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(secret)),
  );
  assert.equal(record.sha256, Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""));
});

Deno.test("KeyRing.verify() takes its own keys only: not a changed secret, id or shape", async () => {
  const a = await newKey(SCOPE);
  const b = await newKey(SCOPE);
  const ring = new KeyRing([a.record]);
  assert.equal((await ring.verify(a.key))?.id, a.record.id);
  assert.equal(await ring.verify(b.key), undefined);
  const flipped = a.key.slice(0, -1) + (a.key.endsWith("A") ? "B" : "A");
  assert.equal(await ring.verify(flipped), undefined);
  // Another key's secret under this key's id.
  assert.equal(await ring.verify(`gw_${a.record.id}_${b.key.slice(20)}`), undefined);
  assert.equal(await ring.verify(""), undefined);
  assert.equal(await ring.verify(a.record.sha256), undefined);
});

Deno.test("mayCall() and mayEmit() follow the key's scope", () => {
  assert.ok(mayCall(SCOPE, "task_a"));
  assert.ok(!mayCall(SCOPE, "task_b"));
  assert.ok(mayCall({ ...SCOPE, functions: ["*"] }, "task_b"));
  assert.ok(mayEmit(SCOPE, "order.created"));
  assert.ok(!mayEmit(SCOPE, "order.created.late"));
  assert.ok(!mayEmit(SCOPE, "payment.created"));
  assert.ok(!mayEmit(SCOPE, "order.*"), "a pattern is no event type");
});

Deno.test("newKey() refuses a key that may do nothing, bad names and limits", async () => {
  await assert.rejects(newKey({ ...SCOPE, functions: [], events: [] }), /may do nothing/);
  await assert.rejects(newKey({ ...SCOPE, functions: ["Task-A"] }), /lower_snake_case/);
  await assert.rejects(newKey({ ...SCOPE, events: ["#.#"] }), /Cannot scope a key to events/);
  await assert.rejects(newKey({ ...SCOPE, rate: 0 }), RangeError);
});

Deno.test("parseKeysFile() names a bad file or entry", () => {
  assert.throws(() => parseKeysFile("{", "k.json"), /k.json' as it is not JSON/);
  assert.throws(() => parseKeysFile("{}", "k.json"), /no 'keys' list/);
  assert.throws(
    () => parseKeysFile('{"keys":[{"id":"x","sha256":"y","functions":[],"events":[]}]}', "k.json"),
    /key 1 of 'k.json'/,
  );
});
