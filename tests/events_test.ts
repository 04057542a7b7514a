/**
 * Events that trigger functions, on the real RabbitMQ at AMQP_URL
 * (docs/events.md): fan-out to every subscribed function, chains, the hop
 * limit, topic permissions, malformed events, and a count of 10,000 events
 * to three functions. Workers run in this process (`startWorker` with the
 * in-process runner) on AMQP connections of their own; every event type
 * starts with a word of this test's own, so no other test's events reach
 * these queues.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { type Broker, PublishForbiddenError } from "../core/broker/mod.ts";
import {
  CE_HEADER_PREFIX,
  CLOUD_EVENTS_EXCHANGE,
  deadLetterQueueOf,
  type EventAttributes,
  MAX_EVENT_HOPS,
  type Message,
  parseDeadLetter,
} from "../core/contract/mod.ts";
import { emitEvent } from "../client/emit.ts";
import { defineFunction } from "../runtime/define_function.ts";
import { inProcessRunner } from "../runtime/handler_runner.ts";
import { type RunningWorker, startWorker } from "../runtime/worker/consumer.ts";
import {
  dispatcherPermissions,
  topicPermissionsOf,
  workerPermissions,
} from "../ops/rabbitmq/definitions.ts";
import { AMQP_URL, NEEDS_RABBITMQ } from "./_infra.ts";
import { exitWithin, runDeno, startWorkerProcess } from "./_processes.ts";
import type { RunDocument } from "../dispatcher/report/mod.ts";
import { deleteFunctionQueues, uniqueName, waitFor } from "./_helpers.ts";
import { holdEngine } from "./_engine_lock.ts";

/** A run a function recorded: the event's attributes and the payload. */
interface Run {
  event: EventAttributes | undefined;
  payload: Record<string, unknown>;
}

interface TestFunction {
  name: string;
  queue: string;
  runs: Run[];
  worker: RunningWorker;
  broker: Broker;
}

/** Starts a worker in this process for a function subscribed to `triggers`. */
async function startFunction(
  prefix: string,
  options: {
    triggers: string[];
    emits?: string;
    handle?: (payload: Record<string, unknown>) => unknown;
    concurrency?: number;
  },
): Promise<TestFunction> {
  const name = uniqueName(prefix);
  const runs: Run[] = [];
  const definition = defineFunction({
    name,
    queue: name,
    retry: { maxRetries: 0 },
    handler(payload, context) {
      runs.push({ event: context.event, payload });
      return options.handle ? options.handle(payload) : { ok: true };
    },
  });
  const broker = await connectAmqp(AMQP_URL, { connectionName: name });
  const worker = await startWorker(inProcessRunner(definition), broker, {
    workerId: `${name}@test`,
    triggers: options.triggers,
    emits: options.emits,
    concurrency: options.concurrency ?? 4,
  });
  return { name, queue: name, runs, worker, broker };
}

async function stopAll(functions: TestFunction[]): Promise<void> {
  for (const fn of functions) {
    await fn.worker.stop(1000).catch(() => {});
    await deleteFunctionQueues(fn.broker, fn.queue);
    await fn.broker.close();
  }
}

/** An event-type word of this run's own. */
function topic(): string {
  return `t${crypto.randomUUID().slice(0, 8)}`;
}

Deno.test({
  name: "an event emitted once runs each of three subscribed functions once, in either mode",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const t = topic();
    const functions = [
      await startFunction("exact", { triggers: [`${t}.order.created`] }),
      await startFunction("star", { triggers: [`${t}.order.*`] }),
      await startFunction("hash", { triggers: [`${t}.#`] }),
    ];
    const emitter = await connectAmqp(AMQP_URL, { connectionName: "events-test-emitter" });
    try {
      const id = await emitEvent(emitter, `${t}.order.created`, { order: 42 }, {
        subject: "order-42",
      });
      await waitFor(() => functions.every((fn) => fn.runs.length >= 1), "each function runs it");
      // The same event again (a publisher retrying with its id), then another in binary mode.
      await emitEvent(emitter, `${t}.order.created`, { order: 42 }, { id });
      const second = await emitEvent(emitter, `${t}.order.created`, { order: 43 }, {
        mode: "binary",
      });
      await waitFor(
        () => functions.every((fn) => fn.runs.some((run) => run.event?.id === second)),
        "each function runs the binary-mode event",
      );
      for (const fn of functions) {
        assert.deepEqual(fn.runs.map((run) => run.event?.id), [id, second], fn.name);
        const [first, binary] = fn.runs;
        assert.deepEqual(first.payload, { order: 42 });
        assert.deepEqual(binary.payload, { order: 43 });
        assert.equal(first.event?.type, `${t}.order.created`);
        assert.equal(first.event?.subject, "order-42");
        assert.equal(first.event?.source, "/clients/guest");
        assert.equal(first.event?.hops, 0);
        assert.equal(binary.event?.datacontenttype, "application/json");
      }
    } finally {
      await emitter.close();
      await stopAll(functions);
    }
  },
});

Deno.test({
  name: "a chain of three functions runs end to end, each step one hop on with a derived id",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const t = topic();
    const step = (payload: Record<string, unknown>) => ({ n: Number(payload.n) + 1 });
    const a = await startFunction("step_a", {
      triggers: [`${t}.start`],
      emits: `${t}.a.done`,
      handle: step,
    });
    const b = await startFunction("step_b", {
      triggers: [`${t}.a.done`],
      emits: `${t}.b.done`,
      handle: step,
    });
    const c = await startFunction("step_c", { triggers: [`${t}.b.done`], handle: step });
    const emitter = await connectAmqp(AMQP_URL, { connectionName: "events-test-chain" });
    try {
      const id = await emitEvent(emitter, `${t}.start`, { n: 1 });
      await waitFor(() => c.runs.length === 1, "the third function runs");
      assert.deepEqual(c.runs[0].payload, { n: 3 });
      assert.equal(c.runs[0].event?.hops, 2);
      assert.equal(c.runs[0].event?.source, `/functions/${b.name}`);
      assert.equal(b.runs[0].event?.source, `/functions/${a.name}`);
      assert.equal(a.runs[0].event?.id, id);
      assert.notEqual(b.runs[0].event?.id, id, "a step emits an event of its own id");
      assert.match(b.runs[0].event!.id, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-/);
    } finally {
      await emitter.close();
      await stopAll([a, b, c]);
    }
  },
});

Deno.test({
  name: "a loop of functions is cut at the hop limit and dead-lettered with reason hop_limit",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const t = topic();
    const loop = await startFunction("loop", {
      triggers: [`${t}.again`],
      emits: `${t}.again`,
      handle: (payload) => payload,
    });
    const emitter = await connectAmqp(AMQP_URL, { connectionName: "events-test-loop" });
    try {
      await emitEvent(emitter, `${t}.again`, { round: 1 });
      const dlq = deadLetterQueueOf(loop.queue);
      await waitFor(
        async () => ((await emitter.inspectQueue(dlq))?.messages ?? 0) >= 1,
        "the loop's last event is dead-lettered",
      );
      assert.equal(loop.runs.length, MAX_EVENT_HOPS, "hops 0 to 15 run, the 16th does not");
      assert.deepEqual(loop.runs.map((run) => run.event?.hops), [...Array(MAX_EVENT_HOPS).keys()]);
      const letter = await emitter.get(dlq);
      assert.ok(letter);
      const parsed = parseDeadLetter(letter, dlq);
      emitter.ack(letter);
      assert.equal(parsed.reason, "hop_limit");
      assert.equal(parsed.errorType, "HopLimit");
      assert.match(parsed.errorMessage, /went through 16 functions, the limit/);
    } finally {
      await emitter.close();
      await stopAll([loop]);
    }
  },
});

Deno.test({
  name: "a malformed event is dead-lettered with its reason, and the worker goes on",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const t = topic();
    const fn = await startFunction("strict", { triggers: [`${t}.#`] });
    const raw = await connectAmqp(AMQP_URL, { connectionName: "events-test-raw" });
    const bytes = (text: string) => new TextEncoder().encode(text);
    const structured = (event: unknown): Message => ({
      body: bytes(typeof event === "string" ? event : JSON.stringify(event)),
      properties: { contentType: "application/cloudevents+json" },
    });
    const valid = { specversion: "1.0", id: "e1", source: "/test", type: `${t}.x`, data: {} };
    const cases: [string, Message, string, RegExp][] = [
      ["not JSON", structured("{"), `${t}.x`, /not valid JSON|JSON/],
      ["type not the routing key", structured(valid), `${t}.y`, /not the routing key/],
      ["data an array", structured({ ...valid, data: [1] }), `${t}.x`, /data is an array/],
      ["no id", structured({ ...valid, id: undefined }), `${t}.x`, /has no 'id'/],
      ["wrong specversion", structured({ ...valid, specversion: "0.3" }), `${t}.x`, /specversion/],
      [
        "binary without JSON data",
        {
          body: bytes("hello"),
          properties: {
            contentType: "text/plain",
            headers: {
              [`${CE_HEADER_PREFIX}specversion`]: "1.0",
              [`${CE_HEADER_PREFIX}id`]: "e2",
              [`${CE_HEADER_PREFIX}source`]: "/test",
              [`${CE_HEADER_PREFIX}type`]: `${t}.x`,
            },
          },
        },
        `${t}.x`,
        /content_type is 'text\/plain'/,
      ],
    ];
    try {
      await raw.declareExchange(CLOUD_EVENTS_EXCHANGE, "topic");
      for (const [, message, key] of cases) {
        await raw.publishToExchange(CLOUD_EVENTS_EXCHANGE, message, key);
      }
      // The AMQP binding's own prefix, in binary mode, runs.
      await raw.publishToExchange(CLOUD_EVENTS_EXCHANGE, {
        body: bytes('{"ok": 1}'),
        properties: {
          contentType: "application/json",
          headers: {
            "cloudEvents:specversion": "1.0",
            "cloudEvents:id": "sdk-1",
            "cloudEvents:source": "/sdk",
            "cloudEvents:type": `${t}.sdk`,
          },
        },
      }, `${t}.sdk`);
      await waitFor(() => fn.runs.length === 1, "the good event after the bad ones runs");
      assert.deepEqual(fn.runs[0].payload, { ok: 1 });
      assert.equal(fn.runs[0].event?.id, "sdk-1");
      const dlq = deadLetterQueueOf(fn.queue);
      await waitFor(
        async () => (await raw.inspectQueue(dlq))?.messages === cases.length,
        "every bad event is dead-lettered",
      );
      const reasons: string[] = [];
      for (const [what, , , pattern] of cases) {
        const letter = await raw.get(dlq);
        assert.ok(letter, what);
        const parsed = parseDeadLetter(letter, dlq);
        raw.ack(letter);
        reasons.push(parsed.reason);
        assert.match(parsed.errorMessage, pattern, what);
      }
      assert.deepEqual(reasons, cases.map(() => "rejected"));
    } finally {
      await raw.close();
      await stopAll([fn]);
    }
  },
});

Deno.test({
  name:
    "an event through a binding its function's triggers no longer make is dead-lettered untriggered, counted and not run",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const t = topic();
    const fn = await startFunction("pruned", { triggers: [`${t}.kept`] });
    const admin = await connectAmqp(AMQP_URL, { connectionName: "events-test-untriggered" });
    try {
      // What a trigger removed from the registry leaves: its binding, which
      // no worker can list (AMQP 0-9-1 has no way to) and so none unbinds.
      await admin.bindQueue(fn.queue, CLOUD_EVENTS_EXCHANGE, `${t}.removed.#`);
      const refused = await emitEvent(admin, `${t}.removed.one`, { n: 1 });
      const kept = await emitEvent(admin, `${t}.kept`, { n: 2 });
      const dlq = deadLetterQueueOf(fn.queue);
      await waitFor(
        async () => fn.runs.length === 1 && (await admin.inspectQueue(dlq))?.messages === 1,
        "the triggered event runs and the other is dead-lettered",
      );
      assert.deepEqual(fn.runs.map((run) => run.event?.id), [kept]);
      assert.equal(fn.worker.stats.untriggered, 1);
      const letter = await admin.get(dlq);
      assert.ok(letter);
      const parsed = parseDeadLetter(letter, dlq);
      admin.ack(letter);
      assert.equal(parsed.reason, "untriggered");
      assert.equal(parsed.errorType, "Untriggered");
      assert.equal(parsed.taskId, refused);
      assert.match(
        parsed.errorMessage,
        new RegExp(`no trigger that matches it \\(its triggers: ${t}\\.kept\\)`),
      );
    } finally {
      await admin.close();
      await stopAll([fn]);
    }
  },
});

/** The management API of the host broker, as guest. */
async function management(path: string, method: string, body?: unknown): Promise<void> {
  const base = Deno.env.get("RABBITMQ_MANAGEMENT_URL") ?? "http://127.0.0.1:15672";
  const response = await fetch(`${base}/api/${path}`, {
    method,
    headers: { authorization: `Basic ${btoa("guest:guest")}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  await response.body?.cancel();
  if (!response.ok && response.status !== 404) {
    throw new Error(`Cannot ${method} ${path}: ${response.status}`);
  }
}

Deno.test({
  name:
    "topic permissions as the definitions make them: a forbidden emit is refused, a forbidden binding too",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const t = topic();
    const emitterUser = uniqueName("emitter");
    const workerUser = uniqueName("fn_user");
    const queue = uniqueName("fn_queue");
    const password = crypto.randomUUID();
    const admin = await connectAmqp(AMQP_URL, { connectionName: "events-test-admin" });
    const urlOf = (user: string) => {
      const url = new URL(AMQP_URL);
      url.username = user;
      url.password = password;
      return url.href;
    };
    await admin.declareExchange(CLOUD_EVENTS_EXCHANGE, "topic");
    for (
      const [user, permissions, topicPermission] of [
        [
          emitterUser,
          dispatcherPermissions([]),
          topicPermissionsOf({ emitterPatterns: [`${t}.allowed.*`] }),
        ],
        [
          workerUser,
          workerPermissions(queue, { triggers: [`${t}.in`], emits: `${t}.out` }),
          topicPermissionsOf({ triggers: [`${t}.in`], emits: `${t}.out` }),
        ],
      ] as const
    ) {
      await management(`users/${user}`, "PUT", { password, tags: "" });
      await management(`permissions/%2F/${user}`, "PUT", permissions);
      await management(`topic-permissions/%2F/${user}`, "PUT", topicPermission);
    }
    const emitter = await connectAmqp(urlOf(emitterUser), { connectionName: "events-emitter" });
    const worker = await connectAmqp(urlOf(workerUser), { connectionName: "events-worker" });
    try {
      await emitEvent(emitter, `${t}.allowed.one`, {});
      await assert.rejects(
        emitEvent(emitter, `${t}.denied`, {}),
        (error) =>
          error instanceof PublishForbiddenError && error.routingKey === `${t}.denied` &&
          /may not: grant it in functions\/registry.yaml/.test(error.message),
      );
      // The refusal closed only the events channel: the connection goes on.
      await emitEvent(emitter, `${t}.allowed.two`, {});
      // Events in flight beside a refused one are sent again, not lost.
      const batch = await Promise.allSettled([
        ...Array.from({ length: 50 }, (_, i) => emitEvent(emitter, `${t}.allowed.n${i}`, {})),
        emitEvent(emitter, `${t}.denied`, {}),
        ...Array.from({ length: 50 }, (_, i) => emitEvent(emitter, `${t}.allowed.m${i}`, {})),
      ]);
      assert.deepEqual(
        batch.map((outcome) => outcome.status),
        [...Array(50).fill("fulfilled"), "rejected", ...Array(50).fill("fulfilled")],
        batch.filter((o) => o.status === "rejected").map((o) =>
          String((o as PromiseRejectedResult).reason)
        ).join("\n"),
      );
      await assert.rejects(
        emitEvent(emitter, `${t}.allowed.two.three`, {}),
        PublishForbiddenError,
        "* is one word",
      );

      // A function's user binds its triggers and emits its type, nothing else.
      await worker.declareQueue(queue, { durable: true, type: "quorum" });
      await worker.bindQueue(queue, CLOUD_EVENTS_EXCHANGE, `${t}.in`);
      await assert.rejects(
        worker.bindQueue(queue, CLOUD_EVENTS_EXCHANGE, "#"),
        /ACCESS.REFUSED|refused/i,
        "read is checked on binding keys",
      );
      await emitEvent(worker, `${t}.out`, {});
      await assert.rejects(emitEvent(worker, `${t}.in`, {}), PublishForbiddenError);
    } finally {
      await emitter.close().catch(() => {});
      await worker.close().catch(() => {});
      await admin.deleteQueue(queue).catch(() => {});
      await admin.close();
      await management(`users/${emitterUser}`, "DELETE");
      await management(`users/${workerUser}`, "DELETE");
    }
  },
});

Deno.test({
  name: "10,000 events to three functions give 30,000 runs, none lost and none twice, by event id",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    // Never beside the cluster suite: see tests/_engine_lock.ts.
    await using _engine = await holdEngine("shared");
    const t = topic();
    const COUNT = 10_000;
    const functions = [
      await startFunction("many_a", { triggers: [`${t}.tick`], concurrency: 64 }),
      await startFunction("many_b", { triggers: [`${t}.*`], concurrency: 64 }),
      await startFunction("many_c", { triggers: [`${t}.#`], concurrency: 64 }),
    ];
    const emitter = await connectAmqp(AMQP_URL, { connectionName: "events-test-many" });
    try {
      const ids: string[] = [];
      for (let start = 0; start < COUNT; start += 500) {
        const batch = Array.from(
          { length: Math.min(500, COUNT - start) },
          (_, i) => emitEvent(emitter, `${t}.tick`, { i: start + i }),
        );
        ids.push(...await Promise.all(batch));
      }
      await waitFor(
        () => functions.every((fn) => fn.runs.length >= COUNT),
        "every function runs every event",
        120_000,
      );
      for (const fn of functions) {
        const seen = new Map<string, number>();
        for (const run of fn.runs) seen.set(run.event!.id, (seen.get(run.event!.id) ?? 0) + 1);
        assert.equal(seen.size, COUNT, `${fn.name}: none lost`);
        assert.deepEqual([...seen.values()].filter((n) => n > 1), [], `${fn.name}: none twice`);
        assert.ok(ids.every((id) => seen.has(id)));
      }
      assert.equal(functions.reduce((sum, fn) => sum + fn.runs.length, 0), 3 * COUNT);
    } finally {
      await emitter.close();
      await stopAll(functions);
    }
  },
});

Deno.test({
  name:
    "deno task emit runs a worker's function, its queue bound by FUNCTION_TRIGGERS, its Events line naming the function",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const t = topic();
    const queue = uniqueName("emit_cli");
    // As the worker image runs it: task_a's module under the file name function.ts.
    const worker = await startWorkerProcess("tests/fixtures/functions/function.ts", {
      AMQP_URL,
      QUEUE: queue,
      FUNCTION_NAME: "task_a",
      FUNCTION_QUEUE: "queue_a",
      FUNCTION_TRIGGERS: `${t}.greet,${t}.hello.*`,
      FUNCTION_EMITS: `${t}.greeted`,
    });
    const admin = await connectAmqp(AMQP_URL, { connectionName: "events-test-cli" });
    try {
      const events = worker.lines.filter((line) => line.includes('"msg":"Events"'));
      assert.equal(events.length, 1, worker.lines.join("\n"));
      const { ts, ...fields } = JSON.parse(events[0]);
      assert.ok(!Number.isNaN(Date.parse(ts)));
      assert.match(fields.worker, /^task_a@.+-\d+$/);
      assert.deepEqual({ ...fields, worker: "task_a@" }, {
        level: "info",
        msg: "Events",
        function: "task_a",
        queue,
        worker: "task_a@",
        triggers: `${t}.greet,${t}.hello.*`,
        emits: `${t}.greeted`,
      });
      const result = await runDeno(
        ["task", "emit", `${t}.greet`, "--data", '{"work_ms": 1}', "--json"],
        { AMQP_URL },
        { timeoutMs: 60_000 },
      );
      assert.equal(result.code, 0, result.stderr);
      const { id } = JSON.parse(result.stdout.trim().split("\n").at(-1)!);
      await worker.waitForLine(new RegExp(`Task succeeded.*${id}|${id}.*Task succeeded`), 30_000);
      const refused = await runDeno(["task", "emit", "order created"], { AMQP_URL }, {
        timeoutMs: 60_000,
      });
      assert.equal(refused.code, 2, "a bad type is a usage error");
    } finally {
      await worker.stop("SIGTERM");
      await exitWithin(worker, 30_000, "the worker stops").catch(() => {});
      await deleteFunctionQueues(admin, queue);
      await admin.close();
    }
  },
});

Deno.test({
  name: "a dispatch scenario emits an event and checks the runs it triggers, down a chain too",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const t = topic();
    const [queueA, queueB] = [uniqueName("scenario_a"), uniqueName("scenario_b")];
    const dir = await Deno.makeTempDir();
    await Deno.writeTextFile(
      `${dir}/registry.yaml`,
      [
        "functions:",
        "  task_a:",
        `    queue: ${queueA}`,
        `    triggers: [${t}.greet]`,
        `    emits: ${t}.greeted`,
        "  task_b:",
        `    queue: ${queueB}`,
        `    triggers: ["${t}.greeted"]`,
      ].join("\n"),
    );
    await Deno.writeTextFile(
      `${dir}/test-config.yml`,
      [
        "registry: registry.yaml",
        "default_scenario: chain",
        "scenarios:",
        "  chain:",
        "    events:",
        `      - emit: ${t}.greet`,
        "        data: { work_ms: 5 }",
        "        expect_runs: [{ function: task_a }, { function: task_b }]",
        "  wrong:",
        "    events:",
        `      - emit: ${t}.greet`,
        "        timeout_ms: 3000",
        "        expect_runs: [{ function: task_b, status: error }]",
      ].join("\n"),
    );
    const workers = [
      await startWorkerProcess("task_a", {
        AMQP_URL,
        QUEUE: queueA,
        FUNCTION_TRIGGERS: `${t}.greet`,
        FUNCTION_EMITS: `${t}.greeted`,
      }),
      await startWorkerProcess("task_b", {
        AMQP_URL,
        QUEUE: queueB,
        FUNCTION_TRIGGERS: `${t}.greeted`,
      }),
    ];
    const admin = await connectAmqp(AMQP_URL, { connectionName: "events-test-scenario" });
    try {
      const run = (scenario: string, files = ["--no-save"]) =>
        runDeno(
          [
            "task",
            "dispatch",
            "--config",
            `${dir}/test-config.yml`,
            "--scenario",
            scenario,
            ...files,
          ],
          { AMQP_URL },
          { timeoutMs: 120_000 },
        );
      const passed = await run("chain");
      assert.equal(passed.code, 0, passed.stdout + passed.stderr);
      assert.match(passed.stdout, /EMITTED\s+\S+\.greet as [0-9a-f-]{36}/);
      assert.match(passed.stdout, /RAN\s+task_a success/);
      assert.match(passed.stdout, /RAN\s+task_b success .*down the chain, event [0-9a-f-]{36}/);
      assert.match(passed.stdout, /Events passed: 1\/1/);
      const failed = await run("wrong", [
        "--out",
        `${dir}/wrong.json`,
        "--junit",
        `${dir}/wrong.xml`,
      ]);
      assert.equal(failed.code, 1, failed.stdout + failed.stderr);
      assert.match(
        failed.stdout,
        /task_b expected to end in error, ended in success: FAILED/,
      );
      // The run's document and JUnit XML say what the terminal says.
      const document: RunDocument = JSON.parse(await Deno.readTextFile(`${dir}/wrong.json`));
      assert.equal(document.exit_code, 1);
      assert.deepEqual(document.summary.events, { total: 1, passed: 0, failed: 1 });
      assert.equal(document.events[0].problem, "task_b expected to end in error, ended in success");
      assert.match(
        await Deno.readTextFile(`${dir}/wrong.xml`),
        /<testsuite name="wrong" tests="1" failures="1" errors="0"/,
      );
    } finally {
      for (const worker of workers) {
        await worker.stop("SIGTERM");
        await exitWithin(worker, 30_000, "the worker stops").catch(() => {});
      }
      await deleteFunctionQueues(admin, queueA, queueB);
      await admin.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
