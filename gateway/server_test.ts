import assert from "node:assert/strict";
import type { CallOutcome, FunctionRoute, TaskReply } from "../client/mod.ts";
import { BrokerUnavailableError } from "../client/mod.ts";
import type { GatewayBackend } from "./server.ts";
import { KeyRing, newKey } from "./keys.ts";
import { createGateway, sseEvent } from "./server.ts";
import { type CallStore, StoreUnavailableError } from "./call_records.ts";
import { FailureLimit } from "./limits.ts";

function replyOf(
  status: "success" | "error",
  result: unknown,
  error?: TaskReply["error"],
): TaskReply {
  return {
    task_id: "t",
    task: "task_a",
    status,
    result,
    error: error ?? null,
    worker: "w",
    queue: "queue_a",
    attempts: status === "error" ? 3 : 1,
    started_at: "",
    finished_at: "",
    duration_ms: 1,
  };
}

function outcomeOf(taskId: string, reply?: TaskReply): CallOutcome {
  const times = { taskId, sentAt: 0, endedAt: 1, sentWallMs: 0, endedWallMs: 1 };
  return reply ? { ...times, kind: "reply", reply } : { ...times, kind: "timeout" };
}

class FakeBackend implements GatewayBackend {
  functions = new Map<string, FunctionRoute>([
    ["task_a", { queue: "queue_a", user: "task_a" } as FunctionRoute],
    ["task_b", { queue: "queue_b", user: "task_b" } as FunctionRoute],
  ]);
  workers = true;
  down = false;
  next: (payload: unknown) => CallOutcome = () => outcomeOf("t", replyOf("success", "Hello"));
  emitted: { type: string; options: unknown }[] = [];
  results = new Map<string, PromiseWithResolvers<CallOutcome>>();
  request(_fn: string, payload?: unknown) {
    if (this.down) return Promise.reject(new BrokerUnavailableError("down"));
    return Promise.resolve(this.next(payload));
  }
  submit() {
    const id = crypto.randomUUID();
    this.results.set(id, Promise.withResolvers());
    return Promise.resolve(id);
  }
  result(id: string) {
    return this.results.get(id)!.promise;
  }
  cancel(id: string) {
    return Promise.resolve({ id, status: "stopped" as const, answers: [] });
  }
  emit(type: string, _data?: unknown, options?: unknown) {
    this.emitted.push({ type, options });
    return Promise.resolve("event-1");
  }
  waitForWorkers() {
    return this.workers ? Promise.resolve(new Map()) : Promise.reject(new Error("missing"));
  }
}

async function setUp(options: { calls?: CallStore } = {}) {
  const a = await newKey({
    functions: ["task_a"],
    events: ["demo.#"],
    rate: 1000,
    burst: 1000,
    inFlight: 10,
  });
  const b = await newKey({ functions: ["*"], events: [], rate: 1000, burst: 1000, inFlight: 10 });
  const backend = new FakeBackend();
  let connected = true;
  const gateway = createGateway({
    backend,
    keys: new KeyRing([a.record, b.record]),
    maxBodyBytes: 100,
    maxJsonDepth: 4,
    workerCheckMs: 0,
    connected: () => connected,
    calls: options.calls,
  });
  const send = async (method: string, path: string, key?: string, body?: string, headers = {}) => {
    const response = await gateway.handler(
      new Request(`http://gw${path}`, {
        method,
        body,
        headers: { ...(key && { authorization: `Bearer ${key}` }), ...headers },
      }),
    );
    return { status: response.status, headers: response.headers, body: await response.json() };
  };
  return {
    a: a.key,
    b: b.key,
    backend,
    send,
    gateway,
    setConnected: (up: boolean) => connected = up,
  };
}

Deno.test("createGateway() answers a call's result, its failure (500) and its timeout (504)", async () => {
  const { a, backend, send } = await setUp();
  const ok = await send("POST", "/functions/task_a", a, '{"x":1}');
  assert.equal(ok.status, 200);
  assert.equal(ok.body.result, "Hello");
  backend.next = () => outcomeOf("t", replyOf("error", null, { type: "Boom", message: "no" }));
  const failed = await send("POST", "/functions/task_a", a, "{}");
  assert.equal(failed.status, 500);
  assert.deepEqual([failed.body.error, failed.body.attempts], [{ type: "Boom", message: "no" }, 3]);
  backend.next = () => outcomeOf("t", replyOf("error", null, { type: "Cancelled", message: "c" }));
  assert.equal((await send("POST", "/functions/task_a", a, "{}")).status, 409);
  backend.next = () => outcomeOf("t");
  assert.equal((await send("POST", "/functions/task_a", a)).status, 504);
});

Deno.test("createGateway() refuses: no key 401, scope 403, unknown 404, method 405, payload 400, size 413, depth 400", async () => {
  const { a, b, send } = await setUp();
  assert.equal((await send("POST", "/functions/task_a")).status, 401);
  assert.equal((await send("POST", "/functions/task_a", "gw_nope")).status, 401);
  assert.equal((await send("POST", "/functions/task_b", a, "{}")).status, 403);
  assert.equal((await send("POST", "/functions/task_z", b, "{}")).status, 404);
  assert.equal((await send("GET", "/functions/task_a", a)).status, 405);
  assert.equal((await send("POST", "/functions/task_a", a, "[1]")).status, 400);
  assert.equal((await send("POST", "/functions/task_a", a, "{nope")).status, 400);
  assert.equal(
    (await send("POST", "/functions/task_a", a, `{"p":"${"x".repeat(200)}"}`)).status,
    413,
  );
  const deep = await send("POST", "/functions/task_a", a, '{"a":{"b":{"c":{"d":{}}}}}');
  assert.equal(deep.status, 400);
  assert.equal(deep.body.error, "too_deep");
  assert.equal((await send("POST", "/functions/task_a?timeout_ms=0", a, "{}")).status, 400);
  for (const refused of [await send("GET", "/nowhere", a)]) {
    assert.equal(refused.status, 404);
    assert.match(refused.body.message, /^Cannot /);
  }
});

Deno.test("createGateway() answers 503 with Retry-After without a broker or workers", async () => {
  const { a, backend, send, setConnected } = await setUp();
  backend.workers = false;
  const none = await send("POST", "/functions/task_a", a, "{}");
  assert.equal(none.status, 503);
  assert.equal(none.body.error, "no_workers");
  assert.ok(Number(none.headers.get("retry-after")) > 0);
  backend.workers = true;
  backend.down = true;
  assert.equal((await send("POST", "/functions/task_a", a, "{}")).status, 503);
  setConnected(false);
  assert.equal((await send("GET", "/healthz")).status, 503);
});

Deno.test("createGateway() keeps an async call to the key that made it, and its outcome", async () => {
  const { a, b, backend, send } = await setUp();
  const accepted = await send("POST", "/functions/task_a", a, "{}", { prefer: "respond-async" });
  assert.equal(accepted.status, 202);
  const location = accepted.headers.get("location")!;
  assert.equal((await send("GET", location, a)).body.status, "pending");
  assert.equal((await send("GET", location, b)).status, 404);
  assert.equal((await send("DELETE", location, b)).status, 404);
  backend.results.get(accepted.body.id)!.resolve(
    outcomeOf(accepted.body.id, replyOf("success", 7)),
  );
  await new Promise((resolve) => setTimeout(resolve, 0));
  const done = await send("GET", location, a);
  assert.deepEqual([done.status, done.body.status, done.body.result], [200, "success", 7]);
  assert.equal((await send("DELETE", location, a)).body.cancel, "stopped");
});

Deno.test("createGateway() emits binary and structured events in the key's scope, as its own source", async () => {
  const { a, backend, send } = await setUp();
  const binary = await send("POST", "/events", a, '{"n":1}', {
    "ce-specversion": "1.0",
    "ce-type": "demo.greet",
    "ce-id": "e1",
    "ce-source": "/spoofed",
  });
  assert.equal(binary.status, 202);
  const structured = await send(
    "POST",
    "/events",
    a,
    JSON.stringify({ specversion: "1.0", type: "demo.x", id: "e2", source: "/s", data: {} }),
    { "content-type": "application/cloudevents+json" },
  );
  assert.equal(structured.status, 202);
  assert.deepEqual(backend.emitted.map((e) => e.type), ["demo.greet", "demo.x"]);
  assert.match(JSON.stringify(backend.emitted[0].options), /"source":"\/gateway\/keys\//);
  const forbidden = await send("POST", "/events", a, "{}", {
    "ce-specversion": "1.0",
    "ce-type": "order.created",
    "ce-id": "e3",
    "ce-source": "/s",
  });
  assert.equal(forbidden.status, 403);
  assert.equal((await send("POST", "/events", a, "{}")).status, 400);
});

Deno.test("createGateway() lists the registry's functions in /openapi.json, for a key holder", async () => {
  const { a, send } = await setUp();
  assert.equal((await send("GET", "/openapi.json")).status, 401);
  const spec = await send("GET", "/openapi.json", a);
  assert.equal(spec.body.openapi, "3.1.0");
  assert.deepEqual(
    Object.keys(spec.body.paths).filter((p) => p.startsWith("/functions/")),
    ["/functions/task_a", "/functions/task_b"],
  );
});

Deno.test("createGateway() answers a repeat of an Idempotency-Key with the first response, calling once", async () => {
  const { a, b, backend, send } = await setUp();
  let calls = 0;
  const { promise: release, resolve } = Promise.withResolvers<void>();
  const requestOf = backend.request.bind(backend);
  backend.request = async (fn, payload) => {
    calls++;
    await release;
    return requestOf(fn, payload);
  };
  const headers = { "idempotency-key": "k-1" };
  const first = send("POST", "/functions/task_a", a, '{"n":1}', headers);
  const concurrent = send("POST", "/functions/task_a", a, '{"n":1}', headers);
  resolve();
  const [one, two] = await Promise.all([first, concurrent]);
  const three = await send("POST", "/functions/task_a", a, '{"n":1}', headers);
  assert.equal(calls, 1);
  assert.deepEqual([one.status, two.status, three.status], [200, 200, 200]);
  assert.equal(two.body.id, one.body.id);
  assert.equal(three.headers.get("idempotent-replayed"), "true");
  // Either of the two concurrent requests may claim the key first.
  assert.equal(
    [one, two].filter((r) => r.headers.get("idempotent-replayed") === "true").length,
    1,
    "one of the two concurrent requests is the repeat",
  );
  // Another request under the same key: refused; another API key's same key: its own.
  assert.equal((await send("POST", "/functions/task_a", a, '{"n":2}', headers)).status, 422);
  assert.equal((await send("POST", "/functions/task_a", b, '{"n":2}', headers)).status, 200);
  assert.equal(calls, 2);
});

Deno.test("createGateway() runs an Idempotency-Key's request again after a refusal such as 503", async () => {
  const { a, backend, send } = await setUp();
  backend.workers = false;
  const headers = { "idempotency-key": "k-2" };
  assert.equal((await send("POST", "/functions/task_a", a, "{}", headers)).status, 503);
  backend.workers = true;
  const again = await send("POST", "/functions/task_a", a, "{}", headers);
  assert.equal(again.status, 200);
  assert.equal(again.headers.get("idempotent-replayed"), null);
  const async1 = await send("POST", "/functions/task_a", a, "{}", {
    "idempotency-key": "k-3",
    prefer: "respond-async",
  });
  const async2 = await send("POST", "/functions/task_a", a, "{}", {
    "idempotency-key": "k-3",
    prefer: "respond-async",
  });
  assert.equal(async2.body.id, async1.body.id, "one asynchronous call, one id");
  assert.equal(backend.results.size, 1);
});

Deno.test("createGateway() streams a call's events: pending, then its outcome, then the end", async () => {
  const { a, b, backend, gateway } = await setUp();
  const accepted = await gateway.handler(
    new Request("http://gw/functions/task_a", {
      method: "POST",
      headers: { authorization: `Bearer ${a}`, prefer: "respond-async" },
      body: "{}",
    }),
  );
  const { id } = await accepted.json();
  const open = (key: string) =>
    gateway.handler(
      new Request(`http://gw/calls/${id}/events`, { headers: { authorization: `Bearer ${key}` } }),
    );
  assert.equal((await open(b)).status, 404);
  const stream = await open(a);
  assert.equal(stream.headers.get("content-type"), "text/event-stream");
  const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
  assert.match(
    (await reader.read()).value!,
    /^event: pending\ndata: \{.*"status":"pending".*\}\n\n$/,
  );
  backend.results.get(id)!.resolve(outcomeOf(id, replyOf("success", "done")));
  let rest = "";
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
    rest += chunk.value;
  }
  assert.match(rest, /^event: outcome\ndata: \{.*"status":"success".*"result":"done".*\}\n\n$/);
});

Deno.test("sseEvent() keeps data on one line: line breaks in it are escaped", () => {
  assert.equal(
    sseEvent("outcome", { s: "a\nb\r\nc" }),
    'event: outcome\ndata: {"s":"a\\nb\\r\\nc"}\n\n',
  );
});

Deno.test("createGateway() posts an async call's outcome to its Callback-URL, allowed host and address only", async () => {
  const a = await newKey({
    functions: ["task_a"],
    events: [],
    rate: 1000,
    burst: 1000,
    inFlight: 10,
  });
  const received = Promise.withResolvers<{ body: unknown; id: string | null }>();
  const hook = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    received.resolve({ body: await request.json(), id: request.headers.get("x-gateway-call-id") });
    return new Response(null, { status: 204 });
  });
  const make = (allowPrivate: boolean) => {
    const backend = new FakeBackend();
    const gateway = createGateway({
      backend,
      keys: new KeyRing([a.record]),
      workerCheckMs: 0,
      callbacks: {
        policy: { hosts: ["127.0.0.1"], allowPrivate, brokerHosts: [] },
        firstDelayMs: 1,
      },
    });
    const submit = (headers: Record<string, string>) =>
      gateway.handler(
        new Request("http://gw/functions/task_a", {
          method: "POST",
          headers: { authorization: `Bearer ${a.key}`, ...headers },
          body: "{}",
        }),
      );
    return { backend, submit };
  };
  try {
    const url = `http://127.0.0.1:${hook.addr.port}/done`;
    const strict = make(false);
    const refused = await strict.submit({ prefer: "respond-async", "callback-url": url });
    assert.equal(refused.status, 400);
    assert.match((await refused.json()).message, /loopback/);
    assert.equal(strict.backend.results.size, 0, "no call made");
    const sync = await strict.submit({ "callback-url": url });
    assert.equal(sync.status, 400);
    await sync.body?.cancel();

    const open = make(true);
    const accepted = await open.submit({ prefer: "respond-async", "callback-url": url });
    assert.equal(accepted.status, 202);
    const { id } = await accepted.json();
    open.backend.results.get(id)!.resolve(outcomeOf(id, replyOf("success", "called back")));
    const got = await received.promise;
    assert.equal(got.id, id);
    assert.deepEqual(
      [(got.body as { status: string }).status, (got.body as { result: string }).result],
      ["success", "called back"],
    );
  } finally {
    await hook.shutdown();
  }
});

Deno.test("createGateway() answers CORS for its allowed origins only", async () => {
  const a = await newKey({
    functions: ["task_a"],
    events: [],
    rate: 1000,
    burst: 1000,
    inFlight: 10,
  });
  const gateway = createGateway({
    backend: new FakeBackend(),
    keys: new KeyRing([a.record]),
    workerCheckMs: 0,
    corsOrigins: ["https://app.example.com"],
  });
  const preflight = (origin: string) =>
    gateway.handler(
      new Request("http://gw/functions/task_a", {
        method: "OPTIONS",
        headers: { origin, "access-control-request-method": "POST" },
      }),
    );
  const allowed = await preflight("https://app.example.com");
  assert.equal(allowed.status, 204);
  assert.equal(allowed.headers.get("access-control-allow-origin"), "https://app.example.com");
  const other = await preflight("https://evil.example.net");
  assert.equal(other.status, 401, "no preflight answer for another origin");
  assert.equal(other.headers.get("access-control-allow-origin"), null);
  await other.body?.cancel();
  const call = await gateway.handler(
    new Request("http://gw/functions/task_a", {
      method: "POST",
      headers: { origin: "https://app.example.com", authorization: `Bearer ${a.key}` },
      body: "{}",
    }),
  );
  assert.equal(call.status, 200);
  assert.equal(call.headers.get("access-control-allow-origin"), "https://app.example.com");
  await call.body?.cancel();
  const none = createGateway({ backend: new FakeBackend(), keys: new KeyRing([a.record]) });
  const plain = await none.handler(
    new Request("http://gw/healthz", { headers: { origin: "https://app.example.com" } }),
  );
  assert.equal(plain.headers.get("access-control-allow-origin"), null, "no CORS unless configured");
  await plain.body?.cancel();
});

Deno.test("createGateway() keeps serving sync calls while its store of calls is unavailable, and answers 503 for what needs it", async () => {
  const refuse = () => Promise.reject(new StoreUnavailableError("Cannot read the stream"));
  const store: CallStore = {
    unavailable: () => "the stream 'gateway.calls' cannot be read now",
    hasRoom: () => true,
    submit: refuse,
    find: refuse,
    claim: refuse,
    onCallback: () => {},
    metricsText: () => "gateway_calls_record_up 0\n",
  };
  const { a, send } = await setUp({ calls: store });
  assert.equal((await send("POST", "/functions/task_a", a, "{}")).status, 200, "sync goes on");
  for (
    const [method, path, headers] of [
      ["POST", "/functions/task_a", { prefer: "respond-async" }],
      ["POST", "/functions/task_a", { "idempotency-key": "k" }],
      ["GET", "/calls/c1", {}],
      ["DELETE", "/calls/c1", {}],
      ["GET", "/calls/c1/events", {}],
    ] as const
  ) {
    const refused = await send(method, path, a, method === "POST" ? "{}" : undefined, headers);
    assert.equal(refused.status, 503, `${method} ${path}`);
    assert.equal(refused.headers.get("retry-after"), "5");
    assert.match(refused.body.message, /record of calls is unavailable \(the stream/);
  }
  const health = await send("GET", "/healthz");
  assert.equal(health.status, 200);
  assert.deepEqual(health.body, {
    status: "degraded",
    calls: "the stream 'gateway.calls' cannot be read now",
  });
});

Deno.test("createGateway() answers 429 to an address whose requests fail authentication too often, and to no other address or key", async () => {
  const a = await newKey({
    functions: ["task_a"],
    events: [],
    rate: 1000,
    burst: 1000,
    inFlight: 9,
  });
  const lines: string[] = [];
  const gateway = createGateway({
    backend: new FakeBackend(),
    keys: new KeyRing([a.record]),
    workerCheckMs: 0,
    failureLimit: new FailureLimit({ burst: 3, perSecond: 0.01 }),
    log: (line) => lines.push(line),
  });
  const send = async (address: string, key: string, fn = "task_a") => {
    const response = await gateway.handler(
      new Request(`http://gw/functions/${fn}`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}` },
        body: "{}",
      }),
      { address, limitKey: address },
    );
    return { status: response.status, headers: response.headers, body: await response.json() };
  };
  const wrong = a.key.slice(0, -2) + "xx";
  for (let i = 0; i < 3; i++) assert.equal((await send("203.0.113.9", wrong)).status, 401);
  const refused = await send("203.0.113.9", a.key);
  assert.equal(refused.status, 429, "refused before the key is looked at, a good one too");
  assert.equal(refused.body.error, "too_many_failures");
  assert.ok(Number(refused.headers.get("retry-after")) >= 1);
  assert.equal((await send("198.51.100.1", a.key)).status, 200, "another address, the same key");
  assert.equal((await send("198.51.100.1", wrong)).status, 401, "another address is counted apart");
  // Out-of-scope calls (403) count as failures too.
  for (let i = 0; i < 3; i++) assert.equal((await send("192.0.2.1", a.key, "task_b")).status, 403);
  assert.equal((await send("192.0.2.1", a.key)).status, 429);
  assert.ok(lines.includes("198.51.100.1 POST /functions/task_a 200"), lines.join("\n"));
  assert.equal(
    lines.filter((line) => line.startsWith("gateway: 203.0.113.9 failed authentication")).length,
    1,
    "logged once, when the address is first refused",
  );
});
