/**
 * The gateway (`deno task gateway`) as a process against the RabbitMQ at
 * `AMQP_URL`, with a host worker of task_a: a call over HTTP, sync and
 * async (GET, DELETE to cancel), an event, health, metrics and OpenAPI,
 * and the attacker's list: no key, a wrong key, another key's scope and
 * call id, an oversized and a deeply nested body, a flood from one key
 * while another key's calls go on, a client that sends its headers a byte
 * at a time, and a key that never reaches the output.
 */

import assert from "node:assert/strict";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { AMQP_URL, NEEDS_OPENSSL, NEEDS_RABBITMQ } from "./_infra.ts";
import { makeTestPki } from "./_tls.ts";
import { GatewayFront } from "../gateway/front.ts";
import { deleteFunctionQueues, uniqueName, waitFor } from "./_helpers.ts";
import { runDeno, type RunningProcess, startDeno, startWorkerProcess } from "./_processes.ts";
import { namedReplyQueueOf } from "../core/contract/named_callers.ts";
import { manage } from "./_management.ts";
import { withTempDir } from "./_temp_dir.ts";
import { GATEWAY_ARGS, startGateway } from "./_gateway.ts";
import { startOtlpReceiver, traceTree } from "./_otlp.ts";

async function addKey(keysFile: string, ...flags: string[]): Promise<string> {
  const made = await runDeno(
    [...GATEWAY_ARGS, "keys", "add", "--keys-file", keysFile, ...flags],
    {},
    {
      timeoutMs: 60_000,
    },
  );
  assert.equal(made.code, 0, made.stderr);
  const key = made.stdout.trim();
  assert.match(key, /^gw_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
  assert.ok(!made.stderr.includes(key), "the key is printed on stdout only");
  return key;
}

async function send(
  base: string,
  path: string,
  init: RequestInit & { key?: string } = {},
): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const headers = new Headers(init.headers);
  if (init.key) headers.set("authorization", `Bearer ${init.key}`);
  const response = await fetch(base + path, {
    ...init,
    headers,
    signal: AbortSignal.timeout(60_000),
  });
  const text = await response.text();
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(text);
  } catch {
    body = { text };
  }
  return { status: response.status, headers: response.headers, body };
}

/** Sends `head` to the gateway one byte every `everyMs`; resolves with what came back, when closed. */
async function slowClient(
  port: number,
  head: string,
  everyMs: number,
): Promise<{ text: string; ms: number }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const started = performance.now();
  const reading = (async () => {
    let text = "";
    const decoder = new TextDecoder();
    for await (const chunk of conn.readable) text += decoder.decode(chunk, { stream: true });
    return text;
  })();
  const bytes = new TextEncoder().encode(head);
  try {
    for (const byte of bytes) {
      await conn.write(Uint8Array.of(byte));
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  } catch {
    // Cut off by the gateway: what we expect.
  }
  const text = await Promise.race([
    reading,
    new Promise<string>((_, reject) =>
      setTimeout(() => reject(new Error("the gateway never closed the slow connection")), 30_000)
    ),
  ]);
  return { text, ms: performance.now() - started };
}

Deno.test({
  name:
    "deno task gateway calls task_a over HTTP (sync, async, cancel), emits events, and refuses the attacker's list, with a host worker",
  ignore: NEEDS_RABBITMQ,
  async fn(t) {
    const queueA = uniqueName("gw_a");
    const queueB = uniqueName("gw_b");
    const callsName = uniqueName("gwc");
    await withTempDir(async (dir) => {
      const registry = `${dir}/registry.yaml`;
      await Deno.writeTextFile(
        registry,
        `functions:\n  task_a: { queue: ${queueA} }\n  task_b: { queue: ${queueB} }\n`,
      );
      const keysFile = `${dir}/gateway_keys.json`;
      const keyA = await addKey(
        keysFile,
        "--functions",
        "task_a,task_b",
        "--events",
        "demo.#",
        "--rate",
        "1000",
      );
      const keyB = await addKey(keysFile, "--functions", "task_b", "--rate", "1000");
      const keyFlood = await addKey(
        keysFile,
        "--functions",
        "task_a",
        "--rate",
        "2",
        "--burst",
        "2",
      );
      const keyInFlight = await addKey(
        keysFile,
        "--functions",
        "task_a",
        "--in-flight",
        "1",
        "--rate",
        "1000",
      );
      const stored = await Deno.readTextFile(keysFile);
      for (const key of [keyA, keyB, keyFlood]) {
        assert.ok(!stored.includes(key.slice(20)), "the keys file holds no key's secret");
      }
      assert.equal((await Deno.stat(keysFile)).mode! & 0o777, 0o600);

      const worker = await startWorkerProcess("task_a", {
        AMQP_URL,
        QUEUE: queueA,
        CONCURRENCY: "8",
        LOG_LEVEL: "debug",
      });
      const gateway = startDeno([
        ...GATEWAY_ARGS,
        "--listen",
        "127.0.0.1:0",
        "--registry",
        registry,
        "--keys-file",
        keysFile,
        "--broker",
        AMQP_URL,
        "--calls-name",
        callsName,
        "--max-body-bytes",
        "4096",
        "--head-deadline-ms",
        "1000",
        // Allowed by name: the address check is what must refuse them.
        "--callback-hosts",
        "127.0.0.1,localhost,[::1]",
      ]);
      try {
        const line = await gateway.waitForLine(/listening on http:\/\/127\.0\.0\.1:\d+/, 30_000);
        const port = Number(/:(\d+) as/.exec(line)![1]);
        const base = `http://127.0.0.1:${port}`;

        await t.step("a sync call answers task_a's result", async () => {
          const r = await send(base, "/functions/task_a", {
            method: "POST",
            key: keyA,
            body: JSON.stringify({ work_ms: 5 }),
          });
          assert.equal(r.status, 200, JSON.stringify(r.body));
          assert.equal(r.body.result, "Hello from Task A");
          assert.equal(r.body.attempts, 1);
        });

        await t.step("no key is 401, a wrong key 401, another function's key 403", async () => {
          const none = await send(base, "/functions/task_a", { method: "POST", body: "{}" });
          assert.equal(none.status, 401);
          assert.match(String(none.body.message), /Authorization: Bearer/);
          const wrong = await send(base, "/functions/task_a", {
            method: "POST",
            key: keyA.slice(0, -4) + "AAAA",
            body: "{}",
          });
          assert.equal(wrong.status, 401);
          const scoped = await send(base, "/functions/task_a", {
            method: "POST",
            key: keyB,
            body: "{}",
          });
          assert.equal(scoped.status, 403);
          assert.match(String(scoped.body.message), /--functions task_a/);
        });

        await t.step("a failed task answers its error type, message and attempts", async () => {
          const r = await send(base, "/functions/task_a", {
            method: "POST",
            key: keyA,
            body: JSON.stringify({ fail_attempts: 99, work_ms: 0 }),
          });
          assert.equal(r.status, 500);
          assert.deepEqual(Object.keys(r.body.error as object).sort(), ["message", "type"]);
          assert.equal((r.body.error as { type: string }).type, "SimulatedFailure");
          assert.ok(Number(r.body.attempts) >= 1);
        });

        await t.step(
          "a function with no worker is 503 with Retry-After; a late reply 504",
          async () => {
            const none = await send(base, "/functions/task_b", {
              method: "POST",
              key: keyA,
              body: "{}",
            });
            assert.equal(none.status, 503);
            assert.ok(Number(none.headers.get("retry-after")) > 0);
            const late = await send(base, "/functions/task_a?timeout_ms=200", {
              method: "POST",
              key: keyA,
              body: JSON.stringify({ work_ms: 3000 }),
            });
            assert.equal(late.status, 504);
            assert.equal(late.body.status, "timeout");
          },
        );

        await t.step(
          "async: 202 with Location, GET the outcome; another key's id is 404",
          async () => {
            const r = await send(base, "/functions/task_a", {
              method: "POST",
              key: keyA,
              headers: { prefer: "respond-async" },
              body: JSON.stringify({ work_ms: 200 }),
            });
            assert.equal(r.status, 202);
            const location = r.headers.get("location")!;
            assert.equal(location, `/calls/${r.body.id}`);
            const foreign = await send(base, location, { key: keyB });
            assert.equal(foreign.status, 404);
            let done: Awaited<ReturnType<typeof send>> | undefined;
            await waitFor(
              async () => {
                done = await send(base, location, { key: keyA });
                return done.body.status !== "pending";
              },
              "the async call to end",
              30_000,
              100,
            );
            assert.equal(done!.body.status, "success");
            assert.equal(done!.body.result, "Hello from Task A");
          },
        );

        await t.step("DELETE cancels a running async call; another key may not", async () => {
          const r = await send(base, "/functions/task_a", {
            method: "POST",
            key: keyA,
            headers: { prefer: "respond-async" },
            body: JSON.stringify({ work_ms: 60_000 }),
          });
          assert.equal(r.status, 202);
          const location = r.headers.get("location")!;
          await waitFor(
            () =>
              worker.lines.some((l) => l.includes("Task started") && l.includes(String(r.body.id))),
            "the long call to start",
            30_000,
          );
          assert.equal((await send(base, location, { method: "DELETE", key: keyB })).status, 404);
          const cancelled = await send(base, location, { method: "DELETE", key: keyA });
          assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
          assert.equal(cancelled.body.cancel, "stopped");
          let done: Awaited<ReturnType<typeof send>> | undefined;
          await waitFor(
            async () => {
              done = await send(base, location, { key: keyA });
              return done.body.status !== "pending";
            },
            "the cancelled call to end",
            30_000,
            100,
          );
          assert.equal((done!.body.error as { type: string }).type, "Cancelled");
        });

        await t.step(
          "an event in binary and structured mode is 202; a type out of scope 403",
          async () => {
            const binary = await send(base, "/events", {
              method: "POST",
              key: keyA,
              headers: {
                "ce-specversion": "1.0",
                "ce-type": "demo.greet",
                "ce-id": "gw-binary-1",
                "ce-source": "/test",
                "content-type": "application/json",
              },
              body: JSON.stringify({ name: "x" }),
            });
            assert.equal(binary.status, 202, JSON.stringify(binary.body));
            assert.equal(binary.body.id, "gw-binary-1");
            const structured = await send(base, "/events", {
              method: "POST",
              key: keyA,
              headers: { "content-type": "application/cloudevents+json" },
              body: JSON.stringify({
                specversion: "1.0",
                type: "demo.greet",
                id: "gw-structured-1",
                source: "/test",
                data: {},
              }),
            });
            assert.equal(structured.status, 202, JSON.stringify(structured.body));
            const forbidden = await send(base, "/events", {
              method: "POST",
              key: keyB,
              headers: {
                "ce-specversion": "1.0",
                "ce-type": "demo.greet",
                "ce-id": "x",
                "ce-source": "/t",
              },
              body: "{}",
            });
            assert.equal(forbidden.status, 403);
          },
        );

        await t.step("an oversized body is 413, a deep one 400, with no call made", async () => {
          const big = await send(base, "/functions/task_a", {
            method: "POST",
            key: keyA,
            body: JSON.stringify({ pad: "x".repeat(8000) }),
          });
          assert.equal(big.status, 413);
          const deep = await send(base, "/functions/task_a", {
            method: "POST",
            key: keyA,
            body: '{"a":'.repeat(100) + "1" + "}".repeat(100),
          });
          assert.equal(deep.status, 400);
          assert.match(String(deep.body.message), /nested deeper than/);
        });

        await t.step(
          "a flood from one key is 429 with Retry-After while another key's calls go on",
          async () => {
            const flood = await Promise.all(
              Array.from({ length: 20 }, () =>
                send(base, "/functions/task_a", {
                  method: "POST",
                  key: keyFlood,
                  body: JSON.stringify({ work_ms: 0 }),
                })),
            );
            const limited = flood.filter((r) => r.status === 429);
            assert.ok(limited.length >= 15, `429s: ${limited.length}`);
            assert.ok(Number(limited[0].headers.get("retry-after")) >= 1);
            const other = await Promise.all(
              Array.from({ length: 10 }, () =>
                send(base, "/functions/task_a", {
                  method: "POST",
                  key: keyA,
                  body: '{"work_ms":0}',
                })),
            );
            assert.deepEqual(
              other.map((r) => r.status),
              Array(10).fill(200),
            );
          },
        );

        await t.step("past its in-flight limit a key is 429", async () => {
          const started = () => worker.lines.filter((l) => l.includes("Task started")).length;
          const before = started();
          const slow = send(base, "/functions/task_a", {
            method: "POST",
            key: keyInFlight,
            body: JSON.stringify({ work_ms: 1500 }),
          });
          await waitFor(() => started() > before, "a call to start");
          let second: Awaited<ReturnType<typeof send>> | undefined;
          await waitFor(
            async () => {
              second = await send(base, "/functions/task_a", {
                method: "POST",
                key: keyInFlight,
                body: "{}",
              });
              return second.status === 429;
            },
            "the second call to be refused while the first runs",
            1_400,
            50,
          );
          assert.equal(second!.body.error, "too_many_in_flight");
          assert.equal((await slow).status, 200);
        });

        await t.step(
          "a client sending its headers a byte at a time is cut at the head deadline",
          async () => {
            const { text, ms } = await slowClient(
              port,
              `POST /functions/task_a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${keyA}\r\nX-Pad: ${
                "a".repeat(400)
              }\r\n\r\n`,
              20,
            );
            assert.match(text, /^HTTP\/1\.1 408/);
            assert.ok(ms < 5_000, `cut after ${ms} ms`);
          },
        );

        await t.step(
          "an Idempotency-Key's repeat answers the first call's response; the function runs once",
          async () => {
            const headers = { "idempotency-key": crypto.randomUUID() };
            const body = JSON.stringify({ work_ms: 50 });
            const first = await send(base, "/functions/task_a", {
              method: "POST",
              key: keyA,
              headers,
              body,
            });
            const repeat = await send(base, "/functions/task_a", {
              method: "POST",
              key: keyA,
              headers,
              body,
            });
            assert.equal(first.status, 200);
            assert.equal(repeat.body.id, first.body.id);
            assert.equal(repeat.headers.get("idempotent-replayed"), "true");
            const runs = worker.lines.filter((l) =>
              l.includes("Task started") && l.includes(String(first.body.id))
            );
            assert.equal(runs.length, 1);
            const other = await send(base, "/functions/task_a", {
              method: "POST",
              key: keyA,
              headers,
              body: JSON.stringify({ work_ms: 51 }),
            });
            assert.equal(other.status, 422);
          },
        );

        await t.step("GET /calls/{id}/events streams pending, then the outcome", async () => {
          const accepted = await send(base, "/functions/task_a", {
            method: "POST",
            key: keyA,
            headers: { prefer: "respond-async" },
            body: JSON.stringify({ work_ms: 300 }),
          });
          const response = await fetch(`${base}/calls/${accepted.body.id}/events`, {
            headers: { authorization: `Bearer ${keyA}` },
            signal: AbortSignal.timeout(30_000),
          });
          assert.equal(response.headers.get("content-type"), "text/event-stream");
          const text = await response.text();
          assert.match(text, /^event: pending\n/);
          assert.match(text, /event: outcome\ndata: .*"result":"Hello from Task A"/);
        });

        await t.step(
          "a Callback-URL into 127.0.0.1, ::1 or the broker is refused, and no call made",
          async () => {
            const started = worker.lines.filter((l) => l.includes("Task started")).length;
            for (
              const url of [
                `http://127.0.0.1:${port}/functions/task_a`,
                "http://localhost:15672/api/users",
                "http://[::1]:5672/",
                "http://169.254.169.254/latest/meta-data/",
              ]
            ) {
              const r = await send(base, "/functions/task_a", {
                method: "POST",
                key: keyA,
                headers: { prefer: "respond-async", "callback-url": url },
                body: "{}",
              });
              assert.equal(r.status, 400, url);
              assert.equal(r.body.error, "callback_refused", url);
            }
            assert.equal(worker.lines.filter((l) => l.includes("Task started")).length, started);
          },
        );

        await t.step("healthz, metrics and openapi", async () => {
          assert.equal((await send(base, "/healthz")).status, 200);
          const metrics = await (await fetch(`${base}/metrics`)).text();
          assert.match(metrics, /gateway_requests_total\{route="function",status="200"\} \d+/);
          assert.match(metrics, /gateway_requests_total\{route="auth",status="401"\} \d+/);
          assert.equal((await send(base, "/openapi.json")).status, 401);
          const openapi = await send(base, "/openapi.json", { key: keyA });
          assert.equal(openapi.body.openapi, "3.1.0");
          assert.ok((openapi.body.paths as Record<string, unknown>)["/functions/task_a"]);
        });
      } finally {
        await gateway.stop();
        await worker.stop();
        const broker = await connectAmqp(AMQP_URL, { connectionName: "gateway-test-cleanup" });
        await deleteFunctionQueues(broker, queueA, queueB);
        await deleteRecord(broker, callsName);
        await broker.close();
      }
      const output = [...gateway.lines, ...worker.lines].join("\n");
      for (const key of [keyA, keyB, keyFlood, keyInFlight]) {
        assert.ok(!output.includes(key.slice(20)), "no key's secret in any output");
      }
    });
  },
});

Deno.test({
  name:
    "a request's traceparent becomes the parent of the gateway's call span, and the worker's spans its children",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const receiver = await startOtlpReceiver();
    const queue = uniqueName("gw_trace");
    const callsName = uniqueName("gwc");
    await withTempDir(async (dir) => {
      const registry = `${dir}/registry.yaml`;
      await Deno.writeTextFile(registry, `functions:\n  task_a: { queue: ${queue} }\n`);
      const keysFile = `${dir}/gateway_keys.json`;
      const key = await addKey(keysFile, "--functions", "task_a");
      const worker = await startWorkerProcess("task_a", {
        AMQP_URL,
        QUEUE: queue,
        ...receiver.env("worker"),
      });
      const gateway = startDeno(
        [
          ...GATEWAY_ARGS,
          "--listen",
          "127.0.0.1:0",
          "--registry",
          registry,
          "--keys-file",
          keysFile,
          "--broker",
          AMQP_URL,
          "--calls-name",
          callsName,
        ],
        receiver.env("gateway"),
      );
      try {
        const line = await gateway.waitForLine(/listening on http:\/\/127\.0\.0\.1:\d+/, 30_000);
        const port = Number(/:(\d+) as/.exec(line)![1]);
        const traceId = crypto.randomUUID().replaceAll("-", "");
        const parent = "00f067aa0ba902b7";
        const r = await send(`http://127.0.0.1:${port}`, "/functions/task_a", {
          method: "POST",
          key,
          headers: { traceparent: `00-${traceId}-${parent}-01` },
          body: '{"work_ms":1}',
        });
        assert.equal(r.status, 200);
        await waitFor(
          () =>
            receiver.spans.some((s) => s.traceId === traceId && s.name === "reply") &&
            receiver.spans.some((s) => s.traceId === traceId && s.name === "task_a call"),
          "the call's spans in the request's trace",
          30_000,
          100,
        );
        const call = receiver.spans.find((s) => s.traceId === traceId && s.name === "task_a call");
        assert.ok(call, traceTree(receiver.spans, traceId).join("\n"));
        // Up from the call's span through the gateway's own spans (its HTTP
        // server span) to the first one it did not make: the caller's.
        let top = call;
        for (let up = receiver.spans.find((s) => s.spanId === top.parentSpanId); up;) {
          top = up;
          up = receiver.spans.find((s) => s.spanId === top.parentSpanId);
        }
        assert.equal(top.parentSpanId, parent, traceTree(receiver.spans, traceId).join("\n"));
        assert.equal(top.service, "gateway");
        const wait = receiver.spans.find((s) => s.traceId === traceId && s.name.endsWith(" wait"));
        assert.equal(wait?.parentSpanId, call.spanId, "the worker's spans are the call's children");
      } finally {
        await gateway.stop();
        await worker.stop();
        await receiver.close();
        const broker = await connectAmqp(AMQP_URL, { connectionName: "gateway-trace-cleanup" });
        await deleteFunctionQueues(broker, queue);
        await deleteRecord(broker, callsName);
        await broker.close();
      }
    });
  },
});

Deno.test({
  name: "GatewayFront serves HTTPS with --cert and --key, and nothing in clear on that port",
  ignore: NEEDS_OPENSSL,
  async fn() {
    await withTempDir(async (dir) => {
      const pki = await makeTestPki(dir, ["localhost"]);
      const front = await GatewayFront.start(() => new Response("over tls"), {
        hostname: "127.0.0.1",
        port: 0,
        tls: {
          cert: await Deno.readTextFile(pki.serverCert),
          key: await Deno.readTextFile(pki.serverKey),
        },
      });
      const client = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(pki.ca)] });
      try {
        const response = await fetch(`https://localhost:${front.port}/`, { client });
        assert.equal(await response.text(), "over tls");
        await assert.rejects(
          fetch(`http://127.0.0.1:${front.port}/`, { signal: AbortSignal.timeout(5_000) }),
        );
      } finally {
        client.close();
        await front.close();
      }
    });
  },
});

/** Deletes the shared record `callsName` of the gateways of a test: its stream and reply queue. */
async function deleteRecord(
  broker: { user: string; deleteQueue(name: string): Promise<void> },
  callsName: string,
): Promise<void> {
  await broker.deleteQueue(`gateway.${callsName}`).catch(() => {});
  await broker.deleteQueue(namedReplyQueueOf(broker.user, callsName)).catch(() => {});
}

/** Polls `GET location` on `base` until the call is no longer pending; its last answer. */
async function outcomeOf(base: string, location: string, key: string) {
  let done: Awaited<ReturnType<typeof send>> | undefined;
  await waitFor(
    async () => {
      done = await send(base, location, { key });
      return done.status !== 200 || done.body.status !== "pending";
    },
    `${location} to end`,
    30_000,
    100,
  );
  return done!;
}

Deno.test({
  name:
    "two gateway replicas and two workers share their record: async via A is found, cancelled and ended via B; an Idempotency-Key sent to both at once runs once; B ends and calls back a call of a killed A; a restarted A finds earlier calls",
  ignore: NEEDS_RABBITMQ,
  async fn(t) {
    const queue = uniqueName("gw_two");
    const callsName = uniqueName("gwc");
    const callbacks: { id: string | null; body: Record<string, unknown> }[] = [];
    const hooks = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      async (request) => {
        callbacks.push({
          id: request.headers.get("x-gateway-call-id"),
          body: await request.json(),
        });
        return new Response(null, { status: 204 });
      },
    );
    await withTempDir(async (dir) => {
      const registry = `${dir}/registry.yaml`;
      await Deno.writeTextFile(registry, `functions:\n  task_a: { queue: ${queue} }\n`);
      const keysFile = `${dir}/gateway_keys.json`;
      const key = await addKey(
        keysFile,
        "--functions",
        "task_a",
        "--rate",
        "1000",
        "--in-flight",
        "1000",
      );
      const other = await addKey(keysFile, "--functions", "task_a", "--rate", "1000");
      const workers = [
        await startWorkerProcess("task_a", { AMQP_URL, QUEUE: queue, LOG_LEVEL: "debug" }),
        await startWorkerProcess("task_a", { AMQP_URL, QUEUE: queue, LOG_LEVEL: "debug" }),
      ];
      const runsOf = (id: unknown) =>
        workers.flatMap((w) => w.lines).filter((l) =>
          l.includes("Task started") && l.includes(String(id))
        ).length;
      const flags = ["--callback-hosts", "127.0.0.1", "--callback-allow-private"];
      const gateways: RunningProcess[] = [];
      try {
        let a = await startGateway(registry, keysFile, ["--calls-name", callsName, ...flags]);
        gateways.push(a.gateway);
        const b = await startGateway(registry, keysFile, ["--calls-name", callsName, ...flags]);
        gateways.push(b.gateway);
        const bases = [a.base, b.base];

        await t.step("sync calls hold through either replica", async () => {
          const answers = await Promise.all(
            Array.from({ length: 20 }, (_, i) =>
              send(bases[i % 2], "/functions/task_a", {
                method: "POST",
                key,
                body: JSON.stringify({ work_ms: 20 }),
              })),
          );
          assert.deepEqual(answers.map((r) => r.status), Array(20).fill(200));
        });

        let earlier = "";
        await t.step(
          "an async call via A: GET via B at once finds it, then its outcome",
          async () => {
            const accepted = await send(a.base, "/functions/task_a", {
              method: "POST",
              key,
              headers: { prefer: "respond-async" },
              body: JSON.stringify({ work_ms: 300 }),
            });
            assert.equal(accepted.status, 202);
            earlier = accepted.headers.get("location")!;
            const atOnce = await send(b.base, earlier, { key });
            assert.equal(atOnce.status, 200, JSON.stringify(atOnce.body));
            assert.equal(
              (await send(b.base, earlier, { key: other })).status,
              404,
              "another key's",
            );
            const done = await outcomeOf(b.base, earlier, key);
            assert.equal(done.body.status, "success", JSON.stringify(done.body));
            assert.equal(done.body.result, "Hello from Task A");
            assert.deepEqual((await send(a.base, earlier, { key })).body, done.body);
            assert.equal(runsOf(accepted.body.id), 1);
          },
        );

        await t.step("DELETE via B cancels a call taken by A", async () => {
          const accepted = await send(a.base, "/functions/task_a", {
            method: "POST",
            key,
            headers: { prefer: "respond-async" },
            body: JSON.stringify({ work_ms: 60_000 }),
          });
          const location = accepted.headers.get("location")!;
          await waitFor(() => runsOf(accepted.body.id) === 1, "the long call to start", 30_000);
          assert.equal(
            (await send(b.base, location, { method: "DELETE", key: other })).status,
            404,
          );
          const cancelled = await send(b.base, location, { method: "DELETE", key });
          assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
          assert.equal(cancelled.body.cancel, "stopped");
          const done = await outcomeOf(a.base, location, key);
          assert.equal((done.body.error as { type: string }).type, "Cancelled");
        });

        await t.step(
          "the same Idempotency-Key sent to A and B at once runs its function once, for each of many keys",
          async () => {
            const keys = Array.from({ length: 24 }, () => crypto.randomUUID());
            const pairs = await Promise.all(keys.map((idempotencyKey, i) => {
              const init = {
                method: "POST",
                key,
                headers: {
                  "idempotency-key": idempotencyKey,
                  ...(i % 3 === 0 && { prefer: "respond-async" }),
                },
                body: JSON.stringify({ work_ms: 100, n: i }),
              };
              return Promise.all([
                send(a.base, "/functions/task_a", init),
                send(b.base, "/functions/task_a", init),
              ]);
            }));
            for (const [i, [fromA, fromB]] of pairs.entries()) {
              const what = `key ${i}: ${JSON.stringify([fromA.body, fromB.body])}`;
              assert.deepEqual(
                [fromA.status, fromB.status].sort(),
                i % 3 === 0 ? [202, 202] : [200, 200],
                what,
              );
              assert.equal(fromA.body.id, fromB.body.id, `one call answers both: ${what}`);
              const replayed = [fromA, fromB].filter((r) =>
                r.headers.get("idempotent-replayed") === "true"
              );
              assert.equal(replayed.length, 1, `one of the two is the repeat: ${what}`);
            }
            const ids = pairs.map(([fromA]) => fromA.body.id);
            await waitFor(
              () => ids.every((id) => runsOf(id) >= 1),
              "every call to have run",
              30_000,
            );
            for (const [fromA] of pairs.filter((_, i) => i % 3 === 0)) {
              await outcomeOf(a.base, fromA.headers.get("location")!, key);
            }
            assert.deepEqual(ids.map(runsOf), ids.map(() => 1), "each function ran once");
            const reused = await send(b.base, "/functions/task_a", {
              method: "POST",
              key,
              headers: { "idempotency-key": keys[1] },
              body: JSON.stringify({ work_ms: 100, n: "another" }),
            });
            assert.equal(reused.status, 422, "another request with a key A used");
          },
        );

        let orphan = "";
        await t.step(
          "A killed after its 202: B records the outcome and calls back once",
          async () => {
            const accepted = await send(a.base, "/functions/task_a", {
              method: "POST",
              key,
              headers: {
                prefer: "respond-async",
                "callback-url": `http://127.0.0.1:${hooks.addr.port}/done`,
              },
              body: JSON.stringify({ work_ms: 1_500 }),
            });
            assert.equal(accepted.status, 202, JSON.stringify(accepted.body));
            orphan = accepted.headers.get("location")!;
            await a.gateway.stop("SIGKILL");
            const done = await outcomeOf(b.base, orphan, key);
            assert.equal(done.body.status, "success", JSON.stringify(done.body));
            await waitFor(
              () => callbacks.some((c) => c.id === accepted.body.id),
              "the callback",
              30_000,
            );
            assert.deepEqual(callbacks.find((c) => c.id === accepted.body.id)!.body, done.body);
          },
        );

        await t.step(
          "a restarted A finds the earlier calls, and calls nothing back again",
          async () => {
            a = await startGateway(registry, keysFile, ["--calls-name", callsName, ...flags]);
            gateways.push(a.gateway);
            for (const location of [earlier, orphan]) {
              const found = await send(a.base, location, { key });
              assert.equal(found.status, 200, `${location}: ${JSON.stringify(found.body)}`);
              assert.equal(found.body.status, "success");
            }
            // A read the whole record before it took requests: it would have called back by now.
            const metricsOf = async (base: string) => await (await fetch(`${base}/metrics`)).text();
            const ofA = await metricsOf(a.base);
            assert.match(ofA, /^gateway_calls_record_up 1$/m);
            assert.match(
              ofA,
              /^gateway_calls_callbacks_total 0$/m,
              "the restarted A calls none back",
            );
            assert.match(await metricsOf(b.base), /^gateway_calls_callbacks_total 1$/m);
            const id = orphan.slice("/calls/".length);
            assert.equal(callbacks.filter((c) => c.id === id).length, 1, "called back once");
            assert.deepEqual((await send(a.base, "/healthz")).body, { status: "ok" });
          },
        );
      } finally {
        for (const gateway of gateways) await gateway.stop("SIGKILL").catch(() => {});
        for (const worker of workers) await worker.stop();
        await hooks.shutdown();
        const broker = await connectAmqp(AMQP_URL, { connectionName: "gateway-two-cleanup" });
        await deleteFunctionQueues(broker, queue);
        await deleteRecord(broker, callsName);
        await broker.close();
      }
    });
  },
});

Deno.test({
  name:
    "a gateway refused its record's stream serves sync calls, answers 503 with Retry-After for what needs the record, and says so in its log, /healthz and /metrics",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("gw_norecord");
    const callsName = uniqueName("gwc");
    // A user that may do all a synchronous caller (and the worker) does, and nothing with the
    // record's stream.
    const user = uniqueName("gw_user");
    const password = crypto.randomUUID();
    const made = await manage("PUT", `users/${user}`, { password, tags: "" });
    assert.ok(made.ok, `create user ${user}: ${made.status}`);
    const granted = await manage("PUT", `permissions/%2F/${user}`, {
      configure: `^(replies\\..*|${queue}.*)$`,
      write: ".*",
      read: "^(?!gateway\\.).*$",
    });
    assert.ok(granted.ok, `permit ${user}: ${granted.status}`);
    const url = new URL(AMQP_URL);
    url.username = user;
    url.password = password;
    await withTempDir(async (dir) => {
      const registry = `${dir}/registry.yaml`;
      await Deno.writeTextFile(registry, `functions:\n  task_a: { queue: ${queue} }\n`);
      const keysFile = `${dir}/gateway_keys.json`;
      const key = await addKey(keysFile, "--functions", "task_a", "--rate", "1000");
      // The worker shares the user: the gateway believes replies from its own user.
      const worker = await startWorkerProcess("task_a", {
        AMQP_URL: url.href,
        QUEUE: queue,
        ALLOWED_SENDERS: user,
      });
      let gateway: RunningProcess | undefined;
      try {
        gateway = startDeno([
          ...GATEWAY_ARGS,
          "--listen",
          "127.0.0.1:0",
          "--registry",
          registry,
          "--keys-file",
          keysFile,
          "--broker",
          url.href,
          "--calls-name",
          callsName,
        ]);
        const line = await gateway.waitForLine(/listening on http:\/\/127\.0\.0\.1:\d+/, 30_000);
        const base = `http://127.0.0.1:${/:(\d+) as/.exec(line)![1]}`;
        const sync = await send(base, "/functions/task_a", { method: "POST", key, body: "{}" });
        assert.equal(sync.status, 200, JSON.stringify(sync.body));
        for (
          const headers of [{ prefer: "respond-async" }, { "idempotency-key": "k1" }] as Record<
            string,
            string
          >[]
        ) {
          const init = { method: "POST", headers, body: "{}" };
          const refused = await send(base, "/functions/task_a", { ...init, key });
          assert.equal(refused.status, 503, JSON.stringify(refused.body));
          assert.ok(Number(refused.headers.get("retry-after")) > 0);
          assert.match(String(refused.body.message), /record of calls/);
        }
        assert.equal((await send(base, "/calls/x", { key })).status, 503);
        const health = await send(base, "/healthz");
        assert.equal(health.status, 200, "still serving synchronous calls");
        assert.equal(health.body.status, "degraded");
        assert.match(String(health.body.calls), /gatewayPermissions/);
        const metrics = await (await fetch(`${base}/metrics`)).text();
        assert.match(metrics, /^gateway_calls_record_up 0$/m);
        assert.ok(
          gateway.lines.some((l) => l.includes("shared record of calls is unavailable")),
          gateway.lines.join("\n"),
        );
        assert.ok(!gateway.lines.join("\n").includes(password), "no password in the log");
      } finally {
        await gateway?.stop("SIGKILL");
        await worker.stop();
        const broker = await connectAmqp(AMQP_URL, { connectionName: "gateway-norecord-cleanup" });
        await deleteFunctionQueues(broker, queue);
        await deleteRecord(broker, callsName);
        await broker.deleteQueue(namedReplyQueueOf(user, callsName)).catch(() => {});
        await broker.close();
        await manage("DELETE", `users/${user}`);
      }
    });
  },
});
