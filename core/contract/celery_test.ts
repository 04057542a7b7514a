import assert from "node:assert/strict";
import {
  celeryArgumentsOf,
  encodeCeleryReply,
  encodeCeleryRequest,
  isCeleryMessage,
  type Message,
  parseCeleryRequest,
  payloadOfCeleryArguments,
} from "./mod.ts";

const encoder = new TextEncoder();
const OPTIONS = { names: ["tasks.task_a"], maxBytes: 1 << 20 };

/** A message as Celery 5 (protocol 2, JSON) publishes one. */
function celery(
  body: unknown,
  headers: Record<string, unknown> = {},
  properties: Message["properties"] = {},
): Message {
  return {
    body: encoder.encode(JSON.stringify(body)),
    properties: {
      contentType: "application/json",
      contentEncoding: "utf-8",
      correlationId: "c-1",
      replyTo: "reply-queue",
      headers: {
        lang: "py",
        task: "tasks.task_a",
        id: "c-1",
        retries: 0,
        eta: null,
        expires: null,
        timelimit: [null, null],
        ...headers,
      },
      ...properties,
    },
  };
}

const EMBED = { callbacks: null, errbacks: null, chain: null, chord: null };

Deno.test("isCeleryMessage() tells Celery's protocol 2 from the native contract", () => {
  assert.equal(isCeleryMessage(celery([[], {}, EMBED])), true);
  assert.equal(
    isCeleryMessage({ body: new Uint8Array(), properties: { headers: { task: "x" } } }),
    false,
  );
  assert.equal(isCeleryMessage({ body: new Uint8Array(), properties: {} }), false);
});

Deno.test("parseCeleryRequest() maps args and kwargs to a payload, and reads the headers", () => {
  const parsed = parseCeleryRequest(
    celery([[], { work_ms: 5 }, EMBED], {
      retries: 2,
      expires: "2030-01-01T00:00:00+00:00",
      eta: "2029-01-01T00:00:00.000Z",
      // Celery sends [time_limit, soft_time_limit]: the hard limit first.
      timelimit: [20, 10],
    }),
    OPTIONS,
  );
  assert.ok(parsed.ok, JSON.stringify(parsed));
  assert.deepEqual(parsed.value.payload, { work_ms: 5 });
  assert.equal(parsed.value.retries, 2);
  assert.equal(parsed.value.expires, Date.parse("2030-01-01T00:00:00Z"));
  assert.equal(parsed.value.eta, Date.parse("2029-01-01T00:00:00Z"));
  assert.equal(parsed.value.timeLimitMs, 20_000, "the hard limit");
  const soft = parseCeleryRequest(celery([[], {}, EMBED], { timelimit: [null, 7.5] }), OPTIONS);
  assert.ok(soft.ok);
  assert.equal(soft.value.timeLimitMs, 7_500, "the soft limit when there is no hard one");
  assert.deepEqual(payloadOfCeleryArguments([{ work_ms: 1 }], { x: 2 }), { work_ms: 1, x: 2 });
  assert.deepEqual(payloadOfCeleryArguments([1, 2], {}), { args: [1, 2] });
});

Deno.test("parseCeleryRequest() refuses what Deno functions do not support, naming it", () => {
  const cases: [Message, string, RegExp][] = [
    [celery([[], {}, { ...EMBED, chain: [{ task: "x" }] }]), "NotSupported", /'chain'/],
    [celery([[], {}, { ...EMBED, callbacks: [{ task: "x" }] }]), "NotSupported", /'callbacks'/],
    [celery([[], {}, { ...EMBED, chord: { task: "x" } }]), "NotSupported", /'chord'/],
    [
      celery([[], {}, EMBED], {}, { contentType: "application/x-python-serialize" }),
      "ContentDisallowed",
      /task_serializer = 'json'/,
    ],
    [
      celery([[], {}, EMBED], { compression: "application/x-gzip" }),
      "ContentDisallowed",
      /compress/,
    ],
    [
      celery([[], {}, EMBED], { task: "tasks.other" }),
      "NotRegistered",
      /'tasks.other'.*serves tasks.task_a/,
    ],
    [celery({ not: "a list" }), "InvalidRequest", /\[args, kwargs, embed\]/],
    [celery([[], {}, EMBED], { expires: "tomorrow" }), "InvalidRequest", /'expires'/],
  ];
  for (const [message, type, pattern] of cases) {
    const parsed = parseCeleryRequest(message, OPTIONS);
    assert.equal(parsed.ok, false);
    if (parsed.ok) continue;
    assert.equal(parsed.error.type, type, parsed.error.message);
    assert.match(parsed.error.message, pattern);
  }
});

Deno.test("encodeCeleryReply() builds the result Celery's rpc:// backend reads", () => {
  const ok = encodeCeleryReply("c-1", { ok: true, resultJson: '"Hello"' });
  assert.equal(ok.properties.correlationId, "c-1");
  const body = JSON.parse(new TextDecoder().decode(ok.body));
  assert.equal(body.status, "SUCCESS");
  assert.equal(body.result, "Hello");
  assert.equal(body.task_id, "c-1");
  assert.deepEqual(body.children, []);
  assert.ok(Date.parse(body.date_done));
  const failed = JSON.parse(
    new TextDecoder().decode(
      encodeCeleryReply("c-2", { ok: false, error: { type: "SimulatedFailure", message: "no" } })
        .body,
    ),
  );
  assert.equal(failed.status, "FAILURE");
  assert.deepEqual(failed.result, {
    exc_type: "SimulatedFailure",
    exc_message: ["no"],
    exc_module: "celery.exceptions",
  });
});

Deno.test("encodeCeleryRequest() builds what a Celery 5 client sends, and a worker reads it back", () => {
  const now = Date.parse("2030-01-01T00:00:00Z");
  const message = encodeCeleryRequest("tasks.task_a", { work_ms: 5, args: [1, "x"] }, {
    taskId: "t-1",
    replyTo: "amq.rabbitmq.reply-to.abc",
    retries: 2,
    expires: now + 1500,
    now,
  });
  const { properties } = message;
  assert.equal(properties.contentType, "application/json");
  assert.equal(properties.contentEncoding, "utf-8");
  assert.equal(properties.correlationId, "t-1", "the task id, as Celery's rpc:// backend matches");
  assert.equal(properties.replyTo, "amq.rabbitmq.reply-to.abc");
  assert.equal(properties.expiration, "1500");
  assert.equal(properties.persistent, true);
  const headers = properties.headers!;
  assert.equal(headers.task, "tasks.task_a");
  assert.equal(headers.id, "t-1");
  assert.equal(headers.retries, 2);
  assert.equal(headers.expires, "2030-01-01T00:00:01.500+00:00", "an aware ISO time");
  assert.deepEqual(headers.timelimit, [null, null]);
  assert.equal(headers.ignore_result, false);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(message.body)), [
    [1, "x"],
    { work_ms: 5 },
    EMBED,
  ]);
  assert.equal(isCeleryMessage(message), true);
  const parsed = parseCeleryRequest(message, OPTIONS);
  assert.ok(parsed.ok, JSON.stringify(parsed));
  assert.deepEqual(parsed.value.payload, { args: [1, "x"], work_ms: 5 }, "the same payload");
  assert.equal(parsed.value.retries, 2);
  assert.equal(parsed.value.expires, now + 1500);
  assert.equal(parsed.value.timeLimitMs, undefined);
});

Deno.test("celeryArgumentsOf() is the way back from payloadOfCeleryArguments()", () => {
  assert.deepEqual(celeryArgumentsOf(undefined), [[], {}]);
  assert.deepEqual(celeryArgumentsOf({ work_ms: 5 }), [[], { work_ms: 5 }]);
  assert.deepEqual(celeryArgumentsOf({ args: [2, 3], x: 1 }), [[2, 3], { x: 1 }]);
  assert.deepEqual(celeryArgumentsOf({ args: "not a list" }), [[], { args: "not a list" }]);
  for (const payload of [{ work_ms: 5 }, { args: [2, 3] }, { args: [2], x: 1 }]) {
    const [args, kwargs] = celeryArgumentsOf(payload);
    assert.deepEqual(payloadOfCeleryArguments(args, kwargs), payload);
  }
});
