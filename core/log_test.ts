import assert from "node:assert/strict";
import {
  createBufferedWriter,
  createLogger,
  type CreateLoggerOptions,
  LOG_LEVELS,
  SILENT_LOGGER,
} from "./log.ts";

function capture(options: Omit<CreateLoggerOptions, "write"> = {}) {
  const lines: string[] = [];
  const log = createLogger({ ...options, write: (line) => lines.push(line) });
  return { log, lines, json: () => lines.map((line) => JSON.parse(line)) };
}

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

Deno.test("createLogger() writes one JSON object per line with ts, level, msg and fields", () => {
  const { log, lines, json } = capture();
  const before = Date.now();
  log.info("Consuming", { queue: "queue_a", prefetch: 2, nested: { ok: true } });
  assert.equal(lines.length, 1);
  assert.ok(!lines[0].includes("\n"));
  const [entry] = json();
  assert.deepEqual(Object.keys(entry), ["ts", "level", "msg", "queue", "prefetch", "nested"]);
  assert.match(entry.ts, ISO);
  assert.ok(Date.parse(entry.ts) >= before - 1 && Date.parse(entry.ts) <= Date.now());
  assert.equal(entry.level, "info");
  assert.equal(entry.msg, "Consuming");
  assert.equal(entry.queue, "queue_a");
  assert.equal(entry.prefetch, 2);
  assert.deepEqual(entry.nested, { ok: true });
});

Deno.test("createLogger() leaves out fields whose value is undefined", () => {
  const { log, json } = capture();
  log.info("Started", { task_id: undefined, attempt: 1, note: null });
  assert.deepEqual(Object.keys(json()[0]), ["ts", "level", "msg", "attempt", "note"]);
});

Deno.test("createLogger() writes each level under its own name", () => {
  const { log, json } = capture({ level: "debug" });
  log.debug("d");
  log.info("i");
  log.warn("w");
  log.error("e");
  assert.deepEqual(json().map((entry) => [entry.level, entry.msg]), [
    ["debug", "d"],
    ["info", "i"],
    ["warn", "w"],
    ["error", "e"],
  ]);
  assert.deepEqual(LOG_LEVELS, ["debug", "info", "warn", "error"]);
});

Deno.test("createLogger() drops lines below its level", () => {
  const byDefault = capture();
  byDefault.log.debug("hidden");
  byDefault.log.info("shown");
  assert.deepEqual(byDefault.json().map((entry) => entry.msg), ["shown"]);

  const warn = capture({ level: "warn" });
  warn.log.debug("d");
  warn.log.info("i");
  warn.log.warn("w");
  warn.log.error("e");
  assert.deepEqual(warn.json().map((entry) => entry.msg), ["w", "e"]);

  const error = capture({ level: "error" });
  error.log.warn("w");
  error.log.error("e");
  assert.deepEqual(error.json().map((entry) => entry.msg), ["e"]);
});

Deno.test("createLogger() puts its fields and a child's fields on every line", () => {
  const { log, json } = capture({ fields: { service: "worker" } });
  const child = log.child({ function: "task_a", queue: "queue_a" });
  const grandchild = child.child({ task_id: "id-1", queue: "queue_b" });
  child.info("one");
  grandchild.info("two", { attempt: 2 });
  log.info("three");
  const [one, two, three] = json();
  assert.equal(one.service, "worker");
  assert.equal(one.function, "task_a");
  assert.equal(one.queue, "queue_a");
  assert.equal(two.queue, "queue_b", "a child's field overrides its parent's");
  assert.equal(two.task_id, "id-1");
  assert.equal(two.attempt, 2);
  assert.equal(three.function, undefined, "a child does not change its parent");
});

Deno.test("createLogger() lets a line's fields override the logger's", () => {
  const { log, json } = capture();
  log.child({ attempt: 1 }).warn("retry", { attempt: 2 });
  assert.equal(json()[0].attempt, 2);
});

Deno.test("createLogger() keeps the level filter in children", () => {
  const { log, lines } = capture({ level: "warn" });
  log.child({ a: 1 }).info("hidden");
  assert.deepEqual(lines, []);
});

Deno.test("createLogger() turns an error value into its name and message", () => {
  const { log, json } = capture();
  log.error("failed", { error: new TypeError("bad input") });
  class Boom extends Error {
    override name = "Boom";
  }
  log.child({ error: new Boom("from the child") }).error("failed");
  log.error("failed", { error: "already a string" });
  assert.deepEqual(json().map((entry) => entry.error), [
    "TypeError: bad input",
    "Boom: from the child",
    "already a string",
  ]);
});

Deno.test("createLogger() writes a short human line in text format", () => {
  const { log, lines } = capture({ format: "text" });
  log.info("Consuming", { queue: "queue_a", prefetch: 2, skipped: undefined, tags: ["x"] });
  log.warn("Lost", { error: new Error("closed") });
  const [info, warn] = lines;
  const [ts, ...rest] = info.split(" ");
  assert.match(ts, ISO);
  assert.equal(rest.join(" "), 'INFO  Consuming queue=queue_a prefetch=2 tags=["x"]');
  assert.ok(warn.endsWith(" WARN  Lost error=Error: closed"), warn);
});

Deno.test("createLogger() keeps a text line one line: control characters in any part are escaped", () => {
  const { log, lines } = capture({ format: "text" });
  const forged = "\n2026-01-01T00:00:00.000Z INFO  Task succeeded status=success";
  log.info(`Function output${forged}`, {
    text: `ok${forged}\r\u001b[2J\u0085\u2028`,
    [`key\nINFO`]: ["a\nb"],
  });
  assert.equal(lines.length, 1);
  assert.ok(!lines[0].includes("\n") && !lines[0].includes("\r") && !lines[0].includes("\u001b"));
  assert.ok(!/[\u0085\u2028]/.test(lines[0]), lines[0]);
  assert.match(
    lines[0],
    /INFO {2}Function output\\n2026-01-01T00:00:00\.000Z INFO {2}Task succeeded/,
  );
  assert.match(lines[0], / text=ok\\n.*\\r\\u001b\[2J\\u0085\\u2028 /);
  assert.match(lines[0], / key\\nINFO=\["a\\nb"\]$/);
});

Deno.test("createLogger() writes with console.log by default", () => {
  const original = console.log;
  const lines: unknown[] = [];
  console.log = (...args: unknown[]) => lines.push(args.join(" "));
  try {
    createLogger().info("hello");
    SILENT_LOGGER.error("never written");
  } finally {
    console.log = original;
  }
  assert.equal(lines.length, 1);
  assert.equal(JSON.parse(lines[0] as string).msg, "hello");
});

Deno.test("createLogger() keeps ts, level and msg whatever the fields are called", () => {
  const { log, json } = capture();
  log.child({ msg: "from child" }).warn("the message", { level: "shadow", ts: "never" });
  const [line] = json();
  assert.equal(line.msg, "the message");
  assert.equal(line.level, "warn");
  assert.match(line.ts, ISO);
});

Deno.test("createLogger() writes any Error field as its name and message", () => {
  const { log, json } = capture();
  log.error("failed", { cause: new TypeError("bad thing") });
  assert.equal(json()[0].cause, "TypeError: bad thing");
});

function sink() {
  const writes: string[] = [];
  return {
    writes,
    output: {
      writeSync(bytes: Uint8Array) {
        // Write at most 10 bytes per call, as a pipe may.
        const n = Math.min(10, bytes.byteLength);
        writes.push(new TextDecoder().decode(bytes.subarray(0, n)));
        return n;
      },
    },
  };
}

Deno.test("createBufferedWriter() writes a line after a quiet spell at once", () => {
  const { writes, output } = sink();
  const writer = createBufferedWriter(output, { flushMs: 10_000 });
  writer.write("first line");
  assert.equal(writes.join(""), "first line\n");
  writer.write("second");
  writer.write("third");
  assert.equal(writes.join(""), "first line\n", "a burst waits for its window");
  writer.flush();
  assert.equal(writes.join(""), "first line\nsecond\nthird\n");
  writer.flush();
});

Deno.test("createBufferedWriter() writes a burst once its window ends, or once it is large", async () => {
  const { writes, output } = sink();
  const writer = createBufferedWriter(output, { flushMs: 5, maxBytes: 20 });
  writer.write("a");
  writer.write("bb");
  assert.equal(writes.join(""), "a\n");
  writer.write("c".repeat(30));
  assert.equal(writes.join(""), `a\nbb\n${"c".repeat(30)}\n`, "over maxBytes: written at once");
  writer.write("d");
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(writes.join("").endsWith("d\n"), true);
  writer.flush();
});

Deno.test("createLogger() writes valid JSON whatever the fields hold, line fields winning", () => {
  const { log, lines } = capture();
  const child = log.child({ worker: "w1", queue: "q", skip: undefined });
  child.info("one", { worker: "w2", fn: () => 1, nested: { a: [1, "two"] }, quote: 'say "hi"' });
  child.info("two");
  const [one, two] = lines.map((line) => JSON.parse(line));
  assert.equal(one.worker, "w2", "a line's field replaces the shared one");
  assert.equal(Object.keys(one).filter((k) => k === "worker").length, 1);
  assert.ok(!("fn" in one) && !("skip" in one), "values JSON cannot hold are left out");
  assert.deepEqual(one.nested, { a: [1, "two"] });
  assert.equal(one.quote, 'say "hi"');
  assert.equal(two.worker, "w1");
  assert.equal(two.queue, "q");
  assert.ok(!lines[0].includes('"worker":"w1"'), "no duplicate key in the text");
});
