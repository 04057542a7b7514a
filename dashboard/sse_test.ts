import assert from "node:assert/strict";
import { SseHub, sseMessage } from "./sse.ts";

const decoder = new TextDecoder();

/** Reads what the stream has queued now, without waiting for more. */
async function drain(reader: ReadableStreamDefaultReader<Uint8Array>, chunks: number) {
  const events: string[] = [];
  for (let i = 0; i < chunks; i++) {
    const { value, done } = await reader.read();
    if (done) break;
    events.push(decoder.decode(value).split("\n")[0]);
  }
  return events;
}

function bigState(bytes: number) {
  return { pad: "x".repeat(bytes) };
}

Deno.test("SseHub skips a message larger than a page's window for that page and keeps it connected", async () => {
  const hub = new SseHub({ backlogBytes: 1024 });
  try {
    const reader = hub.open([sseMessage("state", { n: 0 })], {}).body!.getReader();
    assert.deepEqual(await drain(reader, 1), ["event: state"]);
    hub.send("state", bigState(100_000));
    hub.send("tasks", [{ n: 1 }]);
    assert.equal(hub.size, 1, "still connected");
    assert.equal(hub.skipped, 1);
    const { value } = await reader.read();
    assert.equal(decoder.decode(value), 'event: tasks\ndata: [{"n":1}]\n\n');
    await reader.cancel();
  } finally {
    hub.close();
  }
});

Deno.test("SseHub sends the latest skipped state once a slow page has room again", async () => {
  const hub = new SseHub({ backlogBytes: 2048 });
  try {
    const reader = hub.open([], {}).body!.getReader();
    hub.send("tasks", bigState(1500)); // fills most of the window, unread
    hub.send("state", { n: 1 }); // fits
    hub.send("state", bigState(1000)); // does not fit: owed
    hub.send("state", { n: 3, pad: "y".repeat(900) }); // does not fit either, replaces it
    assert.equal(hub.skipped, 2);
    assert.deepEqual(await drain(reader, 2), ["event: tasks", "event: state"]);
    hub.send("tasks", [{ n: 4 }]);
    const owed = decoder.decode((await reader.read()).value);
    assert.match(owed, /^event: state\ndata: \{"n":3,/, "the latest state first");
    const next = decoder.decode((await reader.read()).value);
    assert.equal(next, 'event: tasks\ndata: [{"n":4}]\n\n');
    assert.equal(hub.size, 1);
    await reader.cancel();
  } finally {
    hub.close();
  }
});

Deno.test("SseHub drops only a page that read nothing for stallMs since a message did not fit", async () => {
  let now = 0;
  const hub = new SseHub({ backlogBytes: 1024, stallMs: 30_000, now: () => now });
  try {
    const stalled = hub.open([], {}).body!.getReader();
    const reading = hub.open([], {}).body!.getReader();
    hub.send("tasks", bigState(900));
    await drain(reading, 1);
    hub.send("tasks", bigState(900)); // the stalled page's window is full from here
    await drain(reading, 1);
    now = 29_999;
    hub.send("tasks", [1]);
    assert.equal(hub.size, 2, "not yet");
    await drain(reading, 1);
    now = 30_000;
    hub.send("tasks", [2]);
    assert.equal(hub.size, 1, "the stalled page is dropped");
    assert.deepEqual(await drain(reading, 1), ["event: tasks"], "the other one stays");
    await assert.rejects(() => stalled.read(), /read nothing for too long/);
    await reading.cancel();
  } finally {
    hub.close();
  }
});

Deno.test("SseHub refuses a stream beyond maxStreams with 503, and takes one again once a page leaves", async () => {
  const hub = new SseHub({ maxStreams: 2 });
  try {
    const first = hub.open([], { "x-frame-options": "DENY" });
    const second = hub.open([], {});
    const third = hub.open([], { "x-frame-options": "DENY" });
    assert.equal(third.status, 503);
    assert.equal(third.headers.get("retry-after"), "10");
    assert.equal(third.headers.get("x-frame-options"), "DENY", "security headers kept");
    assert.match(await third.text(), /2 pages are connected/);
    assert.equal(hub.size, 2);
    await first.body!.cancel();
    const again = hub.open([], {});
    assert.equal(again.status, 200);
    await again.body!.cancel();
    await second.body!.cancel();
  } finally {
    hub.close();
  }
});
