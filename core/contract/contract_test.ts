import assert from "node:assert/strict";
import {
  boundText,
  CONTENT_TYPE,
  DEFAULT_MAX_MESSAGE_BYTES,
  encodeProgress,
  encodeReply,
  encodeRequest,
  headerBytes,
  isJsonContentType,
  jsonDepth,
  MAX_ERROR_MESSAGE_CHARS,
  MAX_HEADER_BYTES,
  MAX_JSON_DEPTH,
  type Message,
  type MessageProperties,
  type Parsed,
  parseProgress,
  parseReply,
  parseRequest,
  PROGRESS_MESSAGE_TYPE,
  RESULT_MESSAGE_TYPE,
  type TaskError,
  type TaskProgress,
  type TaskReply,
} from "./mod.ts";

const encoder = new TextEncoder();
const OPTIONS = { task: "task_a" };

/** A message whose body is `body` as JSON, or as given when it is text or bytes. */
function message(
  body: unknown,
  properties: MessageProperties = { contentType: CONTENT_TYPE },
): Message {
  const bytes = body instanceof Uint8Array
    ? body
    : encoder.encode(typeof body === "string" ? body : JSON.stringify(body));
  return { body: bytes, properties };
}

function bytes(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/** The error of a parse expected to fail, after checking its type. */
function errorOf<T>(parsed: Parsed<T>, type: string): TaskError {
  assert.equal(parsed.ok, false, `expected ${type}, got ${JSON.stringify(parsed)}`);
  if (parsed.ok) throw new Error("unreachable");
  assert.equal(parsed.error.type, type, parsed.error.message);
  return parsed.error;
}

function valueOf<T>(parsed: Parsed<T>): T {
  if (!parsed.ok) {
    assert.fail(`expected a value, got ${parsed.error.type}: ${parsed.error.message}`);
  }
  return parsed.value;
}

function reply(overrides: Partial<Record<keyof TaskReply, unknown>> = {}): Record<string, unknown> {
  return {
    task_id: "id-1",
    task: "task_a",
    status: "success",
    result: "Hello from Task A",
    error: null,
    worker: "worker-1",
    queue: "queue_a",
    attempts: 1,
    started_at: "2024-01-01T00:00:00.000Z",
    finished_at: "2024-01-01T00:00:00.100Z",
    duration_ms: 100,
    ...overrides,
  };
}

// --- isJsonContentType -------------------------------------------------------

Deno.test("isJsonContentType() accepts application/json with or without parameters", () => {
  assert.equal(isJsonContentType("application/json"), true);
  assert.equal(isJsonContentType("application/json; charset=utf-8"), true);
  assert.equal(isJsonContentType("Application/JSON ;charset=UTF-8"), true);
  assert.equal(isJsonContentType("  application/json  "), true);
});

Deno.test("isJsonContentType() refuses other or missing content types", () => {
  assert.equal(isJsonContentType(undefined), false);
  assert.equal(isJsonContentType(""), false);
  assert.equal(isJsonContentType("text/plain"), false);
  assert.equal(isJsonContentType("application/jsonx"), false);
  assert.equal(isJsonContentType("application/ld+json"), false);
  assert.equal(isJsonContentType("text/json"), false);
});

// --- parseRequest: content type and body -------------------------------------

Deno.test("parseRequest() refuses a request without a content type", () => {
  const error = errorOf(
    parseRequest(message({ task: "task_a" }, {}), OPTIONS),
    "InvalidContentType",
  );
  assert.match(error.message, /content_type is missing/);
  assert.match(error.message, /set it to 'application\/json'/);
});

Deno.test("parseRequest() refuses a request whose content type is not JSON", () => {
  const parsed = parseRequest(message({ task: "task_a" }, { contentType: "text/plain" }), OPTIONS);
  const error = errorOf(parsed, "InvalidContentType");
  assert.match(error.message, /content_type is 'text\/plain'/);
  assert.match(error.message, /set it to 'application\/json'/);
});

Deno.test("parseRequest() accepts a JSON content type with a charset parameter", () => {
  const parsed = parseRequest(
    message({ task: "task_a" }, { contentType: "application/json; charset=utf-8" }),
    OPTIONS,
  );
  assert.equal(valueOf(parsed).task, "task_a");
});

Deno.test("parseRequest() refuses an empty body", () => {
  const error = errorOf(parseRequest(message(new Uint8Array()), OPTIONS), "InvalidJson");
  assert.match(error.message, /the request as its body is empty/);
  assert.match(error.message, /send a JSON object/);
});

Deno.test("parseRequest() refuses a body that is not UTF-8", () => {
  const parsed = parseRequest(message(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])), OPTIONS);
  const error = errorOf(parsed, "InvalidJson");
  assert.match(error.message, /not UTF-8 text/);
  assert.match(error.message, /send JSON/);
});

Deno.test("parseRequest() refuses a body that is not JSON", () => {
  const error = errorOf(parseRequest(message('{"task": '), OPTIONS), "InvalidJson");
  assert.match(error.message, /^Cannot parse the request as JSON: \S/);
});

Deno.test("parseRequest() refuses a JSON body that is not an object", () => {
  const cases: [string, RegExp][] = [
    ["[]", /body is an array/],
    ['"task_a"', /body is the string "task_a"/],
    ["null", /body is null/],
    ["42", /body is the number 42/],
    ["true", /body is a boolean/],
  ];
  for (const [body, expected] of cases) {
    const error = errorOf(parseRequest(message(body), OPTIONS), "InvalidRequest");
    assert.match(error.message, expected, body);
    assert.ok(error.message.includes('send {"task": "task_a", "payload": {...}}'), body);
  }
});

Deno.test("parseRequest() refuses a body over maxBytes with MessageTooLarge", () => {
  const body = bytes({ task: "task_a", payload: { text: "x".repeat(100) } });
  const error = errorOf(
    parseRequest(message(body), { task: "task_a", maxBytes: body.byteLength - 1 }),
    "MessageTooLarge",
  );
  assert.match(error.message, new RegExp(`body has ${body.byteLength} bytes`));
  assert.match(error.message, new RegExp(`the limit is ${body.byteLength - 1}`));
});

Deno.test("parseRequest() accepts a body of exactly maxBytes", () => {
  const body = bytes({ task: "task_a" });
  const parsed = parseRequest(message(body), { task: "task_a", maxBytes: body.byteLength });
  assert.equal(valueOf(parsed).task, "task_a");
});

Deno.test("parseRequest() limits bodies to DEFAULT_MAX_MESSAGE_BYTES by default", () => {
  const body = new Uint8Array(DEFAULT_MAX_MESSAGE_BYTES + 1);
  const error = errorOf(parseRequest(message(body), OPTIONS), "MessageTooLarge");
  assert.match(error.message, new RegExp(`the limit is ${DEFAULT_MAX_MESSAGE_BYTES}`));
});

Deno.test("parseRequest() checks the size first, before anything else of the message", () => {
  const parsed = parseRequest(
    message(new Uint8Array(10), { contentType: "text/plain" }),
    { task: "task_a", maxBytes: 1 },
  );
  errorOf(parsed, "MessageTooLarge");
});

// --- parseRequest: fields ----------------------------------------------------

Deno.test("parseRequest() refuses an unknown request field and lists the known ones", () => {
  const parsed = parseRequest(message({ task: "task_a", payload: {}, priority: 1 }), OPTIONS);
  const error = errorOf(parsed, "InvalidRequest");
  assert.match(error.message, /'priority' is not a request field/);
  assert.match(error.message, /use task, payload, progress, retry/);
});

Deno.test("parseRequest() refuses a request without 'task'", () => {
  const error = errorOf(parseRequest(message({ payload: {} }), OPTIONS), "InvalidRequest");
  assert.match(error.message, /'task' is missing/);
  assert.match(error.message, /set it to "task_a"/);
});

Deno.test("parseRequest() refuses an empty or non-string 'task'", () => {
  const cases: [unknown, RegExp][] = [
    ["", /'task' is the string ""/],
    [7, /'task' is the number 7/],
    [null, /'task' is null/],
    [["task_a"], /'task' is an array/],
    [{ name: "task_a" }, /'task' is an object/],
  ];
  for (const [task, expected] of cases) {
    const error = errorOf(parseRequest(message({ task }), OPTIONS), "InvalidRequest");
    assert.match(error.message, expected, JSON.stringify(task));
    assert.match(error.message, /set it to "task_a"/);
  }
});

Deno.test("parseRequest() refuses a request for another function with WrongFunction", () => {
  const error = errorOf(parseRequest(message({ task: "task_b" }), OPTIONS), "WrongFunction");
  assert.match(error.message, /Cannot run 'task_b' on the queue of 'task_a'/);
  assert.match(error.message, /send it to the queue of 'task_b'/);
});

Deno.test("parseRequest() refuses a payload that is not an object", () => {
  const cases: [unknown, RegExp][] = [
    [[1, 2], /'payload' as it is an array/],
    ["work", /'payload' as it is the string "work"/],
    [5, /'payload' as it is the number 5/],
    [false, /'payload' as it is a boolean/],
  ];
  for (const [payload, expected] of cases) {
    const error = errorOf(
      parseRequest(message({ task: "task_a", payload }), OPTIONS),
      "InvalidRequest",
    );
    assert.match(error.message, expected, JSON.stringify(payload));
    assert.match(error.message, /send a JSON object or leave it out/);
  }
});

Deno.test("parseRequest() gives an empty payload, no progress and no retry when they are omitted", () => {
  const value = valueOf(parseRequest(message({ task: "task_a" }), OPTIONS));
  assert.deepEqual(value, { task: "task_a", payload: {}, progress: false, retry: {} });
});

Deno.test("parseRequest() keeps the payload, progress and retry settings it was given", () => {
  const body = {
    task: "task_a",
    payload: { work_ms: 5, nested: { list: [1, "two", null] } },
    progress: true,
    retry: { max_retries: 0, base_delay_ms: 10, factor: 1.5, max_delay_ms: 0 },
    deadline: 1_900_000_000_000,
  };
  assert.deepEqual(valueOf(parseRequest(message(body), OPTIONS)), body);
});

Deno.test("parseRequest() refuses a 'progress' that is not a boolean", () => {
  for (const [progress, expected] of [["yes", /the string "yes"/], [1, /the number 1/]] as const) {
    const error = errorOf(
      parseRequest(message({ task: "task_a", progress }), OPTIONS),
      "InvalidRequest",
    );
    assert.match(error.message, /'progress'/);
    assert.match(error.message, expected);
    assert.match(error.message, /send true or false/);
  }
});

Deno.test("parseRequest() accepts 'progress': false", () => {
  const value = valueOf(parseRequest(message({ task: "task_a", progress: false }), OPTIONS));
  assert.equal(value.progress, false);
});

Deno.test("parseRequest() refuses a 'retry' that is not an object", () => {
  for (const retry of [3, [1], "fast", null]) {
    const error = errorOf(
      parseRequest(message({ task: "task_a", retry }), OPTIONS),
      "InvalidRequest",
    );
    assert.match(error.message, /Cannot accept 'retry' as it is/, JSON.stringify(retry));
    assert.match(error.message, /send an object/);
  }
});

Deno.test("parseRequest() refuses an unknown retry setting and lists the known ones", () => {
  const error = errorOf(
    parseRequest(message({ task: "task_a", retry: { jitter: 0.5 } }), OPTIONS),
    "InvalidRequest",
  );
  assert.match(error.message, /'retry.jitter' as it is not a retry setting/);
  assert.match(error.message, /use max_retries, base_delay_ms, factor, max_delay_ms/);
});

Deno.test("parseRequest() refuses retry settings that are not numbers or out of range", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [
      { max_retries: -1 },
      /'retry.max_retries' as it is the number -1: send a whole number from 0 to 25/,
    ],
    [{ max_retries: "3" }, /'retry.max_retries' as it is the string "3": send a whole number/],
    [
      { max_retries: 26 },
      /'retry.max_retries' as it is the number 26: send a whole number from 0 to 25/,
    ],
    [{ base_delay_ms: -0.5 }, /'retry.base_delay_ms' as it is the number -0.5/],
    [{ base_delay_ms: 0.5 }, /'retry.base_delay_ms' as it is the number 0.5: send a whole number/],
    [{ base_delay_ms: 86_400_001 }, /from 0 to 86400000/],
    [
      { max_delay_ms: 2 ** 32 },
      /'retry.max_delay_ms' as it is the number 4294967296: send a whole number from 0 to 86400000/,
    ],
    [{ max_delay_ms: null }, /'retry.max_delay_ms' as it is null/],
    [{ factor: 0.5 }, /'retry.factor' as it is the number 0.5: send a number from 1 to 10/],
    [{ factor: 11 }, /'retry.factor' as it is the number 11: send a number from 1 to 10/],
    [{ factor: true }, /'retry.factor' as it is a boolean/],
    [{ max_retries: 1.5 }, /'retry.max_retries' as it is the number 1.5: send a whole number/],
    [{ max_retries: 1e308 }, /'retry.max_retries'/],
  ];
  for (const [retry, expected] of cases) {
    const error = errorOf(
      parseRequest(message({ task: "task_a", retry }), OPTIONS),
      "InvalidRequest",
    );
    assert.match(error.message, expected, JSON.stringify(retry));
  }
});

Deno.test("parseRequest() keeps a deadline and refuses one that is not a time", () => {
  const value = valueOf(
    parseRequest(message({ task: "task_a", deadline: 1_900_000_000_000 }), OPTIONS),
  );
  assert.equal(value.deadline, 1_900_000_000_000);
  for (const deadline of [-1, 0, 1.5, "soon", 1e300, null]) {
    const error = errorOf(
      parseRequest(message({ task: "task_a", deadline }), OPTIONS),
      "InvalidRequest",
    );
    assert.match(error.message, /'deadline'.*milliseconds since the Unix epoch/, String(deadline));
  }
});

Deno.test("parseRequest() refuses JSON nested deeper than MAX_JSON_DEPTH before parsing it", () => {
  const deep = (depth: number) => "[".repeat(depth) + "]".repeat(depth);
  const ok = valueOf(
    parseRequest(message(`{"task":"task_a","payload":{"a":${deep(MAX_JSON_DEPTH - 2)}}}`), OPTIONS),
  );
  assert.equal(ok.task, "task_a");
  const error = errorOf(
    parseRequest(message(`{"task":"task_a","payload":{"a":${deep(MAX_JSON_DEPTH)}}}`), OPTIONS),
    "InvalidJson",
  );
  assert.match(error.message, /nests deeper than 64 levels: flatten it/);
  // Brackets inside strings, escaped quotes included, do not count.
  const text = `{"task":"task_a","payload":{"s":"${"[".repeat(200)}\\\"${"{".repeat(200)}"}}`;
  assert.equal(valueOf(parseRequest(message(text), OPTIONS)).task, "task_a");
});

Deno.test("jsonDepth() counts only brackets outside strings and stops past its limit", () => {
  const depth = (text: string, limit = 100) => jsonDepth(encoder.encode(text), limit);
  assert.equal(depth("{}"), 1);
  assert.equal(depth('{"a":[{"b":[]}]}'), 4);
  assert.equal(depth('"[[[["'), 0);
  assert.equal(depth(String.raw`["\\"]`), 1);
  assert.equal(depth(String.raw`["\"[["]`), 1);
  assert.equal(depth("[".repeat(1_000_000), 10), 11);
});

Deno.test("parseRequest() refuses compressed or otherwise encoded bodies, and other charsets", () => {
  for (const contentEncoding of ["gzip", "deflate", "br", "x"]) {
    const error = errorOf(
      parseRequest(
        message({ task: "task_a" }, { contentType: CONTENT_TYPE, contentEncoding }),
        OPTIONS,
      ),
      "InvalidContentEncoding",
    );
    assert.match(error.message, new RegExp(`content_encoding is '${contentEncoding}'`));
  }
  for (const contentEncoding of ["utf-8", "UTF-8", "identity"]) {
    valueOf(
      parseRequest(
        message({ task: "task_a" }, { contentType: CONTENT_TYPE, contentEncoding }),
        OPTIONS,
      ),
    );
  }
  const error = errorOf(
    parseRequest(
      message({ task: "task_a" }, { contentType: "application/json; charset=latin1" }),
      OPTIONS,
    ),
    "InvalidContentType",
  );
  assert.match(error.message, /charset is 'latin1': send UTF-8 JSON/);
});

Deno.test("parseRequest() refuses headers over MAX_HEADER_BYTES, measuring no more than that", () => {
  const big = { "x-big": "x".repeat(MAX_HEADER_BYTES) };
  const error = errorOf(
    parseRequest(message({ task: "task_a" }, { contentType: CONTENT_TYPE, headers: big }), OPTIONS),
    "HeadersTooLarge",
  );
  assert.match(error.message, /more than 16384 bytes/);
  const many = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`h${i}`, i]));
  errorOf(
    parseRequest(
      message({ task: "task_a" }, { contentType: CONTENT_TYPE, headers: many }),
      OPTIONS,
    ),
    "HeadersTooLarge",
  );
  valueOf(
    parseRequest(
      message({ task: "task_a" }, { contentType: CONTENT_TYPE, headers: { a: 1 } }),
      OPTIONS,
    ),
  );
  assert.ok(headerBytes({ a: [1, 2, { b: "c" }] }, 1000) < 100);
});

Deno.test("parseRequest() never echoes much of a hostile value in its error", () => {
  const huge = "t".repeat(100_000);
  for (
    const body of [{ task: huge }, { task: "task_a", [huge]: 1 }, {
      task: "task_a",
      retry: { [huge]: 1 },
    }]
  ) {
    const parsed = parseRequest(message(body), OPTIONS);
    assert.equal(parsed.ok, false);
    if (!parsed.ok) {
      assert.ok(parsed.error.message.length <= MAX_ERROR_MESSAGE_CHARS, parsed.error.message);
    }
  }
  const wrong = errorOf(parseRequest(message({ task: huge }), OPTIONS), "WrongFunction");
  assert.match(wrong.message, /not a function name/);
  assert.equal(boundText("abcdef", 10), "abcdef");
  assert.ok(boundText("x".repeat(1000), 100).length <= 100);
  assert.match(boundText("x".repeat(1000), 100), /\.\.\. \(\d+ more characters\)$/);
});

Deno.test("encodeRequest() carries a deadline in the body and as the AMQP expiration", () => {
  const now = 1_800_000_000_000;
  const encoded = encodeRequest("task_a", {}, { taskId: "t", deadline: now + 1500, now });
  assert.equal(encoded.properties.expiration, "1500");
  assert.equal(valueOf(parseRequest(encoded, OPTIONS)).deadline, now + 1500);
});

Deno.test("parseRequest() never throws, whatever the bytes", () => {
  const samples = ["", "{", "[", "\u0000", "1e999", '{"__proto__": {}}', '{"task": {}}'];
  for (const sample of samples) {
    const parsed = parseRequest(message(sample), OPTIONS);
    assert.equal(parsed.ok, false, sample);
  }
});

// --- encodeRequest -----------------------------------------------------------

Deno.test("encodeRequest() builds a message parseRequest() accepts unchanged", () => {
  const payload = { work_ms: 5, text: "héllo ✓" };
  const retry = { max_retries: 2, base_delay_ms: 10, factor: 3, max_delay_ms: 100 };
  const encoded = encodeRequest("task_a", payload, {
    taskId: "id-1",
    replyTo: "amq.rabbitmq.reply-to",
    progress: true,
    retry,
  });
  assert.deepEqual(valueOf(parseRequest(encoded, OPTIONS)), {
    task: "task_a",
    payload,
    progress: true,
    retry,
  });
});

Deno.test("encodeRequest() sets the AMQP properties of a request", () => {
  const before = Math.floor(Date.now() / 1000);
  const { properties } = encodeRequest("task_a", undefined, {
    taskId: "id-1",
    replyTo: "replies",
  });
  const after = Math.floor(Date.now() / 1000);
  assert.equal(properties.contentType, CONTENT_TYPE);
  assert.equal(properties.correlationId, "id-1");
  assert.equal(properties.messageId, "id-1");
  assert.equal(properties.replyTo, "replies");
  assert.equal(properties.persistent, true);
  assert.ok(properties.timestamp! >= before && properties.timestamp! <= after);
});

Deno.test("encodeRequest() leaves out a payload, progress and retry it was not given", () => {
  const encoded = encodeRequest("task_a", undefined, { taskId: "id-1", retry: {} });
  assert.deepEqual(JSON.parse(new TextDecoder().decode(encoded.body)), { task: "task_a" });
  assert.deepEqual(valueOf(parseRequest(encoded, OPTIONS)), {
    task: "task_a",
    payload: {},
    progress: false,
    retry: {},
  });
});

// --- encodeReply and parseReply ------------------------------------------------

Deno.test("encodeReply() builds a message parseReply() accepts unchanged", () => {
  const original = reply({ result: { nested: [1, 2, { ok: true }] } }) as unknown as TaskReply;
  const encoded = encodeReply(original, "id-1");
  assert.deepEqual(encoded.properties, {
    contentType: CONTENT_TYPE,
    correlationId: "id-1",
    type: RESULT_MESSAGE_TYPE,
  });
  assert.deepEqual(valueOf(parseReply(encoded.body)), original);
});

Deno.test("parseReply() accepts an error reply", () => {
  const original = reply({
    task_id: null,
    task: null,
    status: "error",
    result: null,
    error: { type: "WrongFunction", message: "Cannot run" },
    attempts: 0,
    duration_ms: 0,
  });
  assert.deepEqual(valueOf(parseReply(bytes(original))), original);
});

Deno.test("parseReply() refuses a body that is empty, not UTF-8 or not JSON", () => {
  assert.match(
    errorOf(parseReply(new Uint8Array()), "InvalidJson").message,
    /the reply as its body is empty/,
  );
  assert.match(
    errorOf(parseReply(new Uint8Array([0xc3, 0x28])), "InvalidJson").message,
    /the reply as its body is not UTF-8/,
  );
  assert.match(
    errorOf(parseReply(encoder.encode("{")), "InvalidJson").message,
    /the reply as JSON/,
  );
});

Deno.test("parseReply() refuses a body that is not an object", () => {
  assert.match(errorOf(parseReply(bytes([1])), "InvalidReply").message, /body is an array/);
  assert.match(errorOf(parseReply(bytes(null)), "InvalidReply").message, /body is null/);
});

Deno.test("parseReply() refuses a reply without 'result'", () => {
  const body = reply();
  delete body.result;
  const error = errorOf(parseReply(bytes(body)), "InvalidReply");
  assert.match(error.message, /'result' is missing/);
});

Deno.test("parseReply() accepts any JSON 'result', null included", () => {
  for (const result of [null, 0, "", [], {}, false]) {
    assert.deepEqual(valueOf(parseReply(bytes(reply({ result })))).result, result);
  }
});

Deno.test("parseReply() refuses each malformed field and names it", () => {
  const cases: [keyof TaskReply, unknown, RegExp][] = [
    ["task_id", 5, /'task_id' is the number/],
    ["task", ["task_a"], /'task' is an array/],
    ["status", "ok", /'status' is the string "ok"/],
    ["status", null, /'status' is null/],
    ["error", "boom", /'error' is the string "boom"/],
    ["error", { type: "X" }, /'error' is an object/],
    ["error", { type: 1, message: "m" }, /'error' is an object/],
    ["worker", null, /'worker' is null/],
    ["queue", 1, /'queue' is the number/],
    ["attempts", -1, /'attempts' is the number/],
    ["attempts", 1.5, /'attempts' is the number/],
    ["attempts", "1", /'attempts' is the string "1"/],
    ["started_at", 0, /'started_at' is the number/],
    ["finished_at", false, /'finished_at' is a boolean/],
    ["duration_ms", -1, /'duration_ms' is the number/],
    ["duration_ms", "5", /'duration_ms' is the string "5"/],
  ];
  for (const [field, value, expected] of cases) {
    const error = errorOf(parseReply(bytes(reply({ [field]: value }))), "InvalidReply");
    assert.match(error.message, expected, `${field}: ${JSON.stringify(value)}`);
    assert.match(error.message, /^Cannot accept the reply as /);
  }
});

Deno.test("parseReply() says a required field is missing", () => {
  for (const field of ["task_id", "status", "worker", "attempts", "duration_ms"]) {
    const body = reply();
    delete body[field];
    const error = errorOf(parseReply(bytes(body)), "InvalidReply");
    assert.equal(error.message, `Cannot accept the reply as '${field}' is missing`);
  }
});

// --- encodeProgress and parseProgress ----------------------------------------

const PROGRESS: TaskProgress = {
  task_id: "id-1",
  task: "task_a",
  event: "retry",
  worker: "worker-1",
  queue: "queue_a",
  attempt: 1,
  at: "2024-01-01T00:00:00.000Z",
  error: { type: "SimulatedFailure", message: "Failing attempt 1" },
  delay_ms: 200,
  max_retries: 3,
};

Deno.test("encodeProgress() builds a message parseProgress() accepts unchanged", () => {
  const encoded = encodeProgress(PROGRESS, "id-1");
  assert.deepEqual(encoded.properties, {
    contentType: CONTENT_TYPE,
    correlationId: "id-1",
    type: PROGRESS_MESSAGE_TYPE,
  });
  assert.deepEqual(valueOf(parseProgress(encoded.body)), PROGRESS);
});

Deno.test("parseProgress() accepts a started event", () => {
  const started = { ...PROGRESS, event: "started" };
  delete (started as Partial<TaskProgress>).error;
  assert.deepEqual(valueOf(parseProgress(bytes(started))), started);
});

Deno.test("parseProgress() refuses an unknown event or a body that is not an object", () => {
  for (const body of [{ ...PROGRESS, event: "done" }, { ...PROGRESS, event: undefined }, [], "x"]) {
    const error = errorOf(parseProgress(bytes(body)), "InvalidReply");
    assert.match(error.message, /'event' is not started or retry/, JSON.stringify(body));
  }
});

Deno.test("parseProgress() refuses a wrong 'worker' or 'attempt'", () => {
  for (
    const body of [{ ...PROGRESS, worker: 1 }, { ...PROGRESS, attempt: "1" }, {
      ...PROGRESS,
      attempt: 1.5,
    }]
  ) {
    const error = errorOf(parseProgress(bytes(body)), "InvalidReply");
    assert.match(error.message, /'worker' or 'attempt' is wrong/, JSON.stringify(body));
  }
});

Deno.test("parseProgress() refuses a body that is empty or not JSON", () => {
  assert.match(
    errorOf(parseProgress(new Uint8Array()), "InvalidJson").message,
    /the progress event as its body is empty/,
  );
  assert.match(errorOf(parseProgress(encoder.encode("nope")), "InvalidJson").message, /as JSON/);
});
