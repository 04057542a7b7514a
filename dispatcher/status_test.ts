import assert from "node:assert/strict";
import { type Broker, BrokerUnavailableError, MemoryBroker } from "../core/broker/mod.ts";
import { CONTROL_EXCHANGE, encodeRequest, encodeWorkerInfo } from "../core/contract/mod.ts";
import { defineFunction } from "../runtime/define_function.ts";
import { type RunningWorker, startWorker } from "../runtime/worker/consumer.ts";
import { inProcessRunner } from "../runtime/handler_runner.ts";
import type { SystemStatus } from "./gather_status.ts";
import { formatTable, STATUS_EXIT, statusMain } from "./status.ts";

const taskA = defineFunction({ name: "task_a", queue: "queue_a", handler: () => "A" });

async function run(args: string[], connect: (url: string) => Promise<Broker>, env = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const urls: string[] = [];
  const code = await statusMain(args, {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    env: (name) => (env as Record<string, string>)[name],
    color: { out: false, err: false },
    connect: (url) => {
      urls.push(url);
      return connect(url);
    },
  });
  return { code, out: out.join("\n"), err: err.join("\n"), urls };
}

/** Two task_a workers, one task on them done, two messages waiting on queue_b, one dead letter. */
async function setup() {
  const hub = new MemoryBroker();
  const workers: RunningWorker[] = [
    await startWorker(inProcessRunner(taskA), hub.connect(), { workerId: "task_a@one" }),
    await startWorker(inProcessRunner(taskA), hub.connect(), { workerId: "task_a@two" }),
  ];
  const client = hub.connect();
  const replies: unknown[] = [];
  const replyTo = await client.openReplyQueue((m) => replies.push(m));
  await client.publish("queue_a", encodeRequest("task_a", {}, { taskId: "t1", replyTo }));
  for (const queue of ["queue_b", "queue_b.dlq"]) await client.declareQueue(queue);
  await client.publish("queue_b", encodeRequest("task_b", {}, { taskId: "b1" }));
  await client.publish("queue_b", encodeRequest("task_b", {}, { taskId: "b2" }));
  await client.publish("queue_b.dlq", encodeRequest("task_b", {}, { taskId: "b0" }));
  const deadline = Date.now() + 2000;
  while (replies.length === 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return {
    hub,
    async close() {
      for (const worker of workers) await worker.stop(0);
      await hub.shutdown();
    },
  };
}

Deno.test("statusMain() shows each queue, its dead letters and the live workers", async () => {
  const t = await setup();
  try {
    const { code, out, urls } = await run(
      ["--ping-ms", "100"],
      () => Promise.resolve(t.hub.connect()),
      { AMQP_URL: "amqp://guest:secret@example:5672" },
    );
    assert.equal(code, STATUS_EXIT.missingWorkers, out);
    assert.deepEqual(urls, ["amqp://guest:secret@example:5672"]);
    const lines = out.split("\n");
    assert.equal(lines[0], "Broker: amqp://guest:***@example:5672 (reachable)");
    assert.ok(!out.includes("secret"));
    assert.match(out, /^ {2}FUNCTION +QUEUE +MESSAGES +CONSUMERS +DEAD LETTERS +WORKERS$/m);
    assert.match(out, /^ {2}task_a +queue_a +0 +2 +0 +2$/m);
    assert.match(out, /^ {2}task_b +queue_b +2 +0 +1 +0$/m);
    assert.match(out, /^Workers: 2$/m);
    assert.match(out, /^ {2}task_a@one +task_a +queue_a +\d+s +[01] +0$/m);
    assert.match(out, /^ {2}task_a@two +task_a +queue_a +\d+s +[01] +0$/m);
    assert.match(out, /^No live worker for task_b on 'queue_b': start one/m);
  } finally {
    await t.close();
  }
});

Deno.test("statusMain() --json prints one document, and exits 0 when every function has a worker", async () => {
  const t = await setup();
  const dir = await Deno.makeTempDir();
  try {
    const config = `${dir}/only_a.yml`;
    await Deno.writeTextFile(
      config,
      "functions:\n  task_a: { queue: queue_a }\nscenarios:\n  s:\n    tasks: [{ task: task_a }]\n",
    );
    const { code, out } = await run(
      ["--json", "--config", config, "--ping-ms", "100"],
      () => Promise.resolve(t.hub.connect()),
    );
    assert.equal(code, STATUS_EXIT.ok);
    const status: SystemStatus & { broker: { url: string; reachable: boolean } } = JSON.parse(out);
    assert.deepEqual(status.broker, { url: "amqp://guest:***@localhost:5672", reachable: true });
    assert.deepEqual(status.queues, [{
      function: "task_a",
      queue: "queue_a",
      exists: true,
      messages: 0,
      consumers: 2,
      dead_letters: 0,
      workers: 2,
      protocol: "native",
    }]);
    assert.deepEqual(status.workers.map((w) => w.worker), ["task_a@one", "task_a@two"]);
    assert.equal(status.workers.reduce((sum, w) => sum + w.tasks_done, 0), 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await t.close();
  }
});

Deno.test("statusMain() exits 3 when the broker is unreachable, password masked", async () => {
  const refuse = () =>
    Promise.reject(
      new BrokerUnavailableError("Cannot connect to the broker at amqp://u:***@h:1: refused"),
    );
  const text = await run(["--broker", "amqp://u:pw@h:1"], refuse);
  assert.equal(text.code, STATUS_EXIT.unreachable);
  assert.equal(text.out, "Broker: amqp://u:***@h:1 (unreachable)");
  assert.match(text.err, /Cannot connect/);
  const json = await run(["--broker", "amqp://u:pw@h:1", "--json"], refuse);
  assert.equal(json.code, STATUS_EXIT.unreachable);
  assert.equal(JSON.parse(json.out).broker.reachable, false);
  assert.ok(!(json.out + text.out + text.err).includes("pw@"));
});

Deno.test("statusMain() exits 2 for bad flags or configuration, and documents its flags", async () => {
  const never = () => Promise.reject(new Error("must not connect"));
  for (const args of [["--bogus"], ["--ping-ms", "soon"], ["--config", "/nonexistent.yml"]]) {
    const { code, err } = await run(args, never);
    assert.equal(code, STATUS_EXIT.usage, args.join(" "));
    assert.match(err, /Cannot|Unknown option/);
  }
  const { code, out } = await run(["--help"], never);
  assert.equal(code, STATUS_EXIT.ok);
  for (const flag of ["--config", "--broker", "--ping-ms", "--json", "--help"]) {
    assert.ok(out.includes(flag), flag);
  }
});

Deno.test("formatTable() aligns columns", () => {
  assert.deepEqual(formatTable([["A", "BB"], ["ccc", "d"]]), ["A    BB", "ccc  d"]);
});

Deno.test("statusMain() lists only pongs from each function's user, and warns of the others", async () => {
  const hub = new MemoryBroker();
  const worker = await startWorker(inProcessRunner(taskA), hub.connect("task_a"), {
    workerId: "task_a@real",
  });
  // Another function's user answers every ping, claiming to serve task_a.
  const forger = hub.connect("task_b");
  await forger.declareQueue("forger.control", { exclusive: true });
  await forger.bindQueue("forger.control", CONTROL_EXCHANGE);
  await forger.consume("forger.control", async (delivery) => {
    const { replyTo, correlationId } = delivery.properties;
    const info = {
      kind: "pong" as const,
      worker: "task_a@forged",
      function: "task_a",
      queue: "queue_a",
      started_at: new Date().toISOString(),
      uptime_ms: 1,
      concurrency: 1,
      tasks_done: 0,
      succeeded: 0,
      failed: 0,
      rejected: 0,
      retried: 0,
      in_flight: 0,
    };
    await forger.publish(replyTo!, encodeWorkerInfo(info, correlationId));
    forger.ack(delivery);
  }, { prefetch: 1 });
  try {
    const connect = () => Promise.resolve(hub.connect("dispatcher"));
    const json = await run(["--json", "--ping-ms", "100"], connect);
    const status: SystemStatus = JSON.parse(json.out);
    assert.deepEqual(status.workers.map((w) => w.worker), ["task_a@real"]);
    assert.equal(status.unexpected_senders, 1);
    const text = await run(["--ping-ms", "100"], connect);
    assert.doesNotMatch(text.out, /forged/);
    assert.match(text.err, /^Ignored 1 pong from unexpected senders: /);
  } finally {
    await worker.stop(0);
    await hub.shutdown();
  }
});

Deno.test("statusMain() counts the consumers of a Celery function's queue as its workers", async () => {
  const t = await setup();
  const dir = await Deno.makeTempDir();
  try {
    const config = `${dir}/celery.yml`;
    await Deno.writeTextFile(
      config,
      `functions:
  task_a: { queue: queue_a }
  task_c: { queue: queue_c, protocol: celery, celery_name: tasks.task_c }
  task_d: { queue: queue_d, protocol: celery, celery_name: tasks.task_d }
scenarios:
  s: { tasks: [{ task: task_c }] }
`,
    );
    // A Celery worker, as the broker sees it: a consumer of its queue, answering no ping.
    const celery = t.hub.connect("task_c");
    await celery.declareQueue("queue_c", { durable: true });
    await celery.consume("queue_c", () => {}, { prefetch: 1 });
    const connect = () => Promise.resolve(t.hub.connect());
    const json = await run(["--json", "--config", config, "--ping-ms", "100"], connect);
    assert.equal(json.code, STATUS_EXIT.missingWorkers, "task_d has no Celery worker");
    const status: SystemStatus = JSON.parse(json.out);
    assert.deepEqual(status.queues.map((q) => [q.function, q.protocol, q.consumers, q.workers]), [
      ["task_a", "native", 2, 2],
      ["task_c", "celery", 1, 1],
      ["task_d", "celery", null, 0],
    ]);
    const text = await run(["--config", config, "--ping-ms", "100"], connect);
    assert.match(text.out, /^ {2}task_c +queue_c +0 +1 +- +1 \(celery\)$/m);
    assert.match(
      text.out,
      /^No Celery worker consumes 'queue_d' for task_d: start one with 'docker compose --profile celery up -d'/m,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
    await t.close();
  }
});
