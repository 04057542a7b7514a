import assert from "node:assert/strict";
import {
  addKeyToFile,
  KeyRing,
  mayCall,
  mayEmit,
  newKey,
  parseKeysFile,
  removeKeyFromFile,
  watchKeysFile,
} from "./keys.ts";

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

async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = performance.now() + 5_000;
  while (!await condition()) {
    if (performance.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

Deno.test("watchKeysFile() takes added and removed keys, keeps its keys when the file is bad or gone", async () => {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/keys.json`;
  const lines: string[] = [];
  const a = await newKey(SCOPE);
  const b = await newKey(SCOPE);
  await addKeyToFile(file, a.record);
  const watch = await watchKeysFile(file, { intervalMs: 20, log: (line) => lines.push(line) });
  try {
    assert.equal((await watch.ring.verify(a.key))?.id, a.record.id);
    assert.equal(await watch.ring.verify(b.key), undefined);
    const inode = (await Deno.stat(file)).ino;
    await addKeyToFile(file, b.record);
    assert.equal((await Deno.stat(file)).ino, inode, "rewritten in place: a mounted file sees it");
    await until(async () => (await watch.ring.verify(b.key)) !== undefined, "the added key");
    await removeKeyFromFile(file, a.record.id);
    assert.equal(await watch.reload(), true);
    assert.equal(await watch.ring.verify(a.key), undefined, "a removed key fails at once");
    await Deno.writeTextFile(file, '{"keys": [');
    assert.equal(await watch.reload(), false);
    assert.equal(await watch.reload(), false);
    assert.equal((await watch.ring.verify(b.key))?.id, b.record.id, "a bad file keeps the keys");
    assert.equal(lines.filter((line) => line.includes("cannot be read")).length, 1, "said once");
    assert.match(lines.find((line) => line.includes("cannot be read"))!, /not JSON/);
    await Deno.remove(file);
    assert.equal(await watch.reload(), false);
    assert.equal((await watch.ring.verify(b.key))?.id, b.record.id, "a gone file keeps the keys");
    await addKeyToFile(file, a.record);
    await until(async () => (await watch.ring.verify(a.key)) !== undefined, "the file again");
    assert.equal(await watch.ring.verify(b.key), undefined);
  } finally {
    await watch.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("watchKeysFile() refuses to start on a bad file, and removeKeyFromFile() on an unknown id", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/bad.json`, "{}");
    await assert.rejects(watchKeysFile(`${dir}/bad.json`), /no 'keys' list/);
    await assert.rejects(removeKeyFromFile(`${dir}/bad.json`, "0123456789abcdef"), TypeError);
    await Deno.writeTextFile(`${dir}/k.json`, '{"keys":[]}');
    await assert.rejects(removeKeyFromFile(`${dir}/k.json`, "0123456789abcdef"), RangeError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
