import assert from "node:assert/strict";
import {
  CallLedger,
  type ClaimFate,
  encodeRecord,
  type LedgerRecord,
  MAX_RECORD_BYTES,
  parseRecord,
  stamp,
} from "./call_ledger.ts";

const T0 = 1_800_000_000_000;
const FP_A = "a".repeat(64);
const FP_B = "b".repeat(64);
const REPLY = { task_id: "c1", status: "success", result: "ok", attempts: 1, duration_ms: 3 };

function ledgerAt(clock: { now: number }, options: { windowMs?: number; max?: number } = {}) {
  const ended: string[] = [];
  const ledger = new CallLedger({
    ...options,
    now: () => clock.now,
    onEnded: (call) => ended.push(`${call.id}:${call.endedBy}`),
  });
  const put = (record: LedgerRecord, at = clock.now) => {
    const stamped = stamp(record, at);
    ledger.take(encodeRecord(stamped), true);
    return stamped;
  };
  return { ledger, ended, put };
}

const claim = (id: string, fp: string, at: number, hold: number, key = "k"): LedgerRecord => ({
  kind: "claim",
  claim: id,
  owner: "key1",
  key,
  fp,
  by: `replica-${id}`,
  hold: at + hold,
});

Deno.test("CallLedger keeps a call from accepted to its first ended record, for its owner only", () => {
  const clock = { now: T0 };
  const { ledger, ended, put } = ledgerAt(clock);
  put({ kind: "accepted", id: "c1", fn: "task_a", owner: "key1", deadline: T0 + 30_000 });
  const call = ledger.get("c1", "key1")!;
  assert.equal(call.function, "task_a");
  assert.equal(call.endedMs, undefined);
  assert.equal(ledger.get("c1", "key2"), undefined, "another key's call is not found");
  put({
    kind: "ended",
    id: "c1",
    fn: "task_a",
    owner: "key1",
    nonce: "n1",
    outcome: { kind: "reply", reply: REPLY as never },
  });
  put({ kind: "ended", id: "c1", fn: "task_a", owner: "key1", nonce: "n2", lost: "Late" });
  assert.equal(call.outcome?.kind, "reply");
  assert.equal(call.lost, undefined, "a later ended record changes nothing");
  assert.equal(call.endedBy, "n1");
  assert.deepEqual(ended, ["c1:n1"], "told once, of the first end in stream order");
});

Deno.test("CallLedger finds an ended call whose accepted record left the stream", () => {
  const clock = { now: T0 };
  const { ledger, put } = ledgerAt(clock);
  put({ kind: "ended", id: "c9", fn: "task_b", owner: "key1", nonce: "n", lost: "Gone" });
  assert.equal(ledger.get("c9", "key1")?.lost, "Gone");
  assert.equal(ledger.get("c9", "key1")?.function, "task_b");
});

Deno.test("CallLedger gives a key to the first claim in stream order; a repeat waits for its response", async () => {
  const clock = { now: T0 };
  const { ledger, put } = ledgerAt(clock);
  const first = ledger.whenRead("c1");
  const second = ledger.whenRead("c2");
  const third = ledger.whenRead("c3");
  put(claim("c1", FP_A, T0, 60_000), T0);
  put(claim("c2", FP_A, T0 + 1, 60_000), T0 + 1);
  put(claim("c3", FP_B, T0 + 2, 60_000), T0 + 2);
  assert.deepEqual(await first, { kind: "won" });
  const repeat = await second;
  assert.equal(repeat.kind, "repeat");
  assert.deepEqual(await third, { kind: "mismatch" }, "another request with the key");
  const response = {
    status: 202,
    headers: [["location", "/calls/x"]] as [string, string][],
    body: "{}",
  };
  put({
    kind: "settled",
    claim: "c2",
    owner: "key1",
    key: "k",
    fp: FP_A,
    response: { ...response, status: 500 },
  });
  put({ kind: "settled", claim: "c1", owner: "key1", key: "k", fp: FP_A, response });
  assert.deepEqual(await (repeat as Extract<ClaimFate, { kind: "repeat" }>).response, response);
  const later = ledger.whenRead("c4");
  put(claim("c4", FP_A, T0 + 5_000, 60_000), T0 + 5_000);
  const fate = await later;
  assert.equal(fate.kind, "repeat");
  assert.deepEqual(await (fate as Extract<ClaimFate, { kind: "repeat" }>).response, response);
});

Deno.test("CallLedger frees a key released, or claimed past its hold unsettled, to the next claim", async () => {
  const clock = { now: T0 };
  const { ledger, put } = ledgerAt(clock);
  put(claim("c1", FP_A, T0, 10_000), T0);
  const waiting = ledger.whenRead("c2");
  put(claim("c2", FP_A, T0 + 100, 10_000), T0 + 100);
  const repeat = (await waiting) as Extract<ClaimFate, { kind: "repeat" }>;
  // Within the hold, by the records' own times, the first claim still holds the key.
  const within = ledger.whenRead("c3");
  put(claim("c3", FP_B, T0 + 9_999, 10_000), T0 + 9_999);
  assert.deepEqual(await within, { kind: "mismatch" });
  const after = ledger.whenRead("c4");
  put(claim("c4", FP_B, T0 + 10_001, 10_000), T0 + 10_001);
  assert.deepEqual(await after, { kind: "won" }, "the dead replica's claim no longer holds");
  assert.equal(await repeat.response, "free");
  put({ kind: "released", claim: "c4", owner: "key1", key: "k" });
  const next = ledger.whenRead("c5");
  put(claim("c5", FP_A, T0 + 10_002, 10_000), T0 + 10_002);
  assert.deepEqual(await next, { kind: "won" }, "released: the next claim wins");
  put({ kind: "released", claim: "c1", owner: "key1", key: "k" });
  const again = ledger.whenRead("c6");
  put(claim("c6", FP_A, T0 + 10_003, 10_000), T0 + 10_003);
  assert.equal((await again).kind, "repeat", "a stale release of an old claim frees nothing");
});

Deno.test("CallLedger reads a record twice (a reconnection re-reads the stream) as once", async () => {
  const clock = { now: T0 };
  const { ledger } = ledgerAt(clock);
  const c1 = stamp(claim("c1", FP_A, T0, 10_000), T0);
  const released = stamp({ kind: "released", claim: "c1", owner: "key1", key: "k" }, T0);
  const c2 = stamp(claim("c2", FP_B, T0 + 1, 10_000), T0 + 1);
  for (const record of [c1, released, c2, c1, released, c2]) ledger.apply(record);
  const probe = ledger.whenRead("c3");
  ledger.apply(stamp(claim("c3", FP_B, T0 + 2, 10_000), T0 + 2));
  assert.equal((await probe).kind, "repeat", "c2 still holds the key");
});

Deno.test("CallLedger skips records older than its window, and forgets what ends past it", async () => {
  const clock = { now: T0 };
  const { ledger, put } = ledgerAt(clock, { windowMs: 60_000 });
  put({ kind: "accepted", id: "old", fn: "task_a", owner: "key1", deadline: T0 }, T0 - 60_001);
  assert.equal(ledger.call("old"), undefined);
  assert.equal(ledger.expired, 1);
  put({ kind: "ended", id: "c1", fn: "task_a", owner: "key1", nonce: "n", lost: "x" });
  put(claim("k1", FP_A, T0, 1_000), T0);
  put({
    kind: "settled",
    claim: "k1",
    owner: "key1",
    key: "k",
    fp: FP_A,
    response: { status: 200, headers: [], body: "{}" },
  });
  clock.now = T0 + 60_001;
  ledger.sweep();
  assert.equal(ledger.call("c1"), undefined, "an ended call goes a window after its end");
  assert.equal(ledger.keys, 0);
  const fresh = ledger.whenRead("k2");
  put(claim("k2", FP_B, clock.now, 1_000), clock.now);
  assert.deepEqual(await fresh, { kind: "won" }, "a settled key is free after the window");
});

Deno.test("CallLedger skips and counts malformed, foreign and hostile records, and goes on", () => {
  const clock = { now: T0 };
  const { ledger } = ledgerAt(clock);
  const text = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
  const good = stamp(
    { kind: "accepted", id: "c1", fn: "task_a", owner: "key1", deadline: T0 + 1 },
    T0,
  );
  const bad: Uint8Array[] = [
    new Uint8Array([0xff, 0xfe, 0x00]),
    new TextEncoder().encode("{not json"),
    text(null),
    text([good]),
    text({ ...good, v: 2 }),
    text({ ...good, v: "1" }),
    text({ ...good, at: "yesterday" }),
    text({ ...good, kind: "unknown" }),
    text({ ...good, id: "a b" }),
    text({ ...good, id: "x".repeat(300) }),
    text({ ...good, deadline: -1 }),
    text({ ...good, callback: 7 }),
    text({ ...good, kind: "ended", nonce: "n" }),
    text({ ...good, kind: "ended", nonce: "n", lost: "x", outcome: { kind: "timeout" } }),
    text({
      ...good,
      kind: "ended",
      nonce: "n",
      outcome: { kind: "reply", reply: { status: "ok" } },
    }),
    text({ ...good, kind: "claim", claim: "c", key: "k", fp: "short", by: "r", hold: T0 }),
    text({
      ...good,
      kind: "settled",
      claim: "c",
      key: "k",
      fp: FP_A,
      response: { status: 200, headers: [["Bad Header", "x"]], body: "" },
    }),
    text({
      ...good,
      kind: "settled",
      claim: "c",
      key: "k",
      fp: FP_A,
      response: { status: 99, headers: [], body: "" },
    }),
    new TextEncoder().encode('{"__proto__": {"polluted": 1}, "v": 1, "kind": "accepted"}'),
    new Uint8Array(MAX_RECORD_BYTES + 1).fill(0x20),
  ];
  for (const bytes of bad) ledger.take(bytes, true);
  ledger.take(encodeRecord(good), false);
  assert.equal(ledger.skipped, bad.length + 1, "each counted, the untrusted sender's too");
  assert.equal(ledger.size, 0);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
  ledger.take(encodeRecord(good), true);
  assert.equal(ledger.call("c1")?.function, "task_a", "a good record after them still counts");
  assert.ok(parseRecord(encodeRecord(good)));
});

Deno.test("CallLedger stays within its bound, forgetting the oldest ended calls first", () => {
  const clock = { now: T0 };
  const { ledger, put } = ledgerAt(clock, { max: 3 });
  const accept = (id: string) =>
    put({ kind: "accepted", id, fn: "task_a", owner: "key1", deadline: T0 + 1 });
  accept("a");
  accept("b");
  put({ kind: "ended", id: "b", fn: "task_a", owner: "key1", nonce: "n", lost: "x" });
  accept("c");
  assert.equal(ledger.hasRoom(), false);
  accept("d");
  assert.equal(ledger.size, 3);
  assert.equal(ledger.call("b"), undefined, "the ended one went first");
  assert.ok(ledger.call("a"), "a pending one stays while an ended one can go");
  assert.equal(ledger.dropped, 1);
});

Deno.test("CallLedger started after a claim left the window still holds its key from the settled record", async () => {
  const clock = { now: T0 };
  const { ledger, put } = ledgerAt(clock, { windowMs: 60_000 });
  // The claim is older than the window, its settlement (a long call's) is not.
  put(claim("c1", FP_A, T0 - 70_000, 200_000), T0 - 70_000);
  const response = { status: 200, headers: [] as [string, string][], body: '{"id":"x"}' };
  put({ kind: "settled", claim: "c1", owner: "key1", key: "k", fp: FP_A, response }, T0 - 10_000);
  const repeat = ledger.whenRead("c2");
  const other = ledger.whenRead("c3");
  put(claim("c2", FP_A, T0, 10_000), T0);
  put(claim("c3", FP_B, T0, 10_000), T0);
  const fate = await repeat;
  assert.equal(fate.kind, "repeat");
  assert.deepEqual(await (fate as Extract<ClaimFate, { kind: "repeat" }>).response, response);
  assert.deepEqual(await other, { kind: "mismatch" });
});
