/**
 * Integration: the real worker processes and the dispatcher against the
 * RabbitMQ at `AMQP_URL`, each test on queues of its own.
 */

import assert from "node:assert/strict";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { type Broker, maskUrl } from "../core/broker/mod.ts";
import {
  encodeRequest,
  type Message,
  parseReply,
  PROGRESS_MESSAGE_TYPE,
  type TaskReply,
} from "../core/contract/mod.ts";
import { deadLetterQueueOf } from "../core/contract/mod.ts";
import { TaskClient } from "../client/task_client.ts";
import type { RunDocument } from "../dispatcher/report/mod.ts";
import type { SystemStatus } from "../dispatcher/gather_status.ts";
import { AMQP_URL, NEEDS_RABBITMQ } from "./_infra.ts";
import { deleteFunctionQueues, freePort, uniqueName, waitFor } from "./_helpers.ts";
import {
  exitWithin,
  runDeno,
  type RunningProcess,
  startDeno,
  startWorkerProcess,
  WORKER_MAIN,
  workerArgs,
  workerPermissions,
} from "./_processes.ts";
import { parsePrometheus } from "./_prometheus.ts";
import { startGatedProxy } from "./_proxy.ts";
import { findAll, parseXml } from "./_xml.ts";

const encoder = new TextEncoder();

/** Opens a connection for the duration of `fn`. */
async function withBroker(fn: (broker: Broker) => Promise<void>) {
  const broker = await connectAmqp(AMQP_URL, { connectionName: "integration-test" });
  try {
    await fn(broker);
  } finally {
    await broker.close();
  }
}

/** Deletes the test's queues and their dead letters; call once its workers stopped. */
async function deleteQueues(...queues: string[]) {
  await withBroker(async (broker) => {
    await deleteFunctionQueues(broker, ...queues);
  });
}

/** Collects raw replies on a Direct Reply-to queue. */
async function replyCollector(broker: Broker) {
  const replies: TaskReply[] = [];
  const progress: Message[] = [];
  const replyTo = await broker.openReplyQueue((message) => {
    if (message.properties.type === PROGRESS_MESSAGE_TYPE) {
      progress.push(message);
      return;
    }
    const parsed = parseReply(message.body);
    assert.ok(parsed.ok, "every reply follows the contract");
    replies.push(parsed.value);
  });
  return { replies, progress, replyTo };
}

Deno.test({
  name: "task_a and task_b worker processes answer over RabbitMQ and exit 0 on SIGTERM",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const qa = uniqueName("it_queue_a");
    const qb = uniqueName("it_queue_b");
    const a = await startWorkerProcess("task_a", { AMQP_URL, QUEUE: qa });
    const b = await startWorkerProcess("task_b", { AMQP_URL, QUEUE: qb });
    await withBroker(async (broker) => {
      try {
        const client = await TaskClient.open(broker, {
          functions: new Map([
            ["task_a", { queue: qa, user: "task_a" }],
            ["task_b", { queue: qb, user: "task_b" }],
          ]),
        });
        const [ra, rb] = await Promise.all([
          client.request("task_a", undefined, { timeoutMs: 10_000 }),
          // Above task_b's default (200 ms): a lower bound, which load cannot break.
          client.request("task_b", { work_ms: 1000 }, { timeoutMs: 10_000 }),
        ]);
        client.close();
        assert.equal(ra.kind, "reply");
        assert.equal(rb.kind, "reply");
        if (ra.kind !== "reply" || rb.kind !== "reply") return;
        assert.equal(ra.reply.result, "Hello from Task A");
        assert.equal(rb.reply.result, "Hello from Task B");
        assert.ok(ra.reply.duration_ms >= 100, "task_a's default work is 100 ms");
        assert.ok(rb.reply.duration_ms >= 1000, "work_ms is honoured, not the default 200 ms");
        assert.match(ra.reply.worker, /^task_a@/);
        assert.match(rb.reply.worker, /^task_b@/);
        assert.equal(ra.reply.queue, qa);
      } finally {
        assert.equal(await a.stop("SIGTERM"), 0);
        assert.equal(await b.stop("SIGINT"), 0);
        await deleteQueues(qa, qb);
      }
    });
    for (const line of a.lines) {
      const entry = JSON.parse(line);
      assert.ok(entry.ts && entry.level && entry.msg, `structured log line: ${line}`);
      assert.equal(entry.function, "task_a");
    }
    assert.ok(a.lines.some((line) => JSON.parse(line).msg === "Stopped"), a.lines.join("\n"));
  },
});

Deno.test({
  name:
    "a worker refuses another function's request, keeps serving, and never consumes other queues",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const qa = uniqueName("it_iso_a");
    const qb = uniqueName("it_iso_b");
    const a = await startWorkerProcess("task_a", { AMQP_URL, QUEUE: qa });
    const b = await startWorkerProcess("task_b", { AMQP_URL, QUEUE: qb });
    try {
      await withBroker(async (broker) => {
        assert.equal((await broker.inspectQueue(qa))?.consumers, 1, "only worker-a on queue_a");
        assert.equal((await broker.inspectQueue(qb))?.consumers, 1, "only worker-b on queue_b");
        const { replies, replyTo } = await replyCollector(broker);
        await broker.publish(qa, encodeRequest("task_b", {}, { taskId: "wrong", replyTo }));
        for (let i = 0; i < 10; i++) {
          await broker.publish(
            qa,
            encodeRequest("task_a", { work_ms: 0 }, { taskId: `a${i}`, replyTo }),
          );
        }
        await waitFor(() => replies.length === 11, "eleven replies");
        const wrong = replies.find((r) => r.task_id === "wrong")!;
        assert.equal(wrong.status, "error");
        assert.equal(wrong.error?.type, "WrongFunction");
        assert.match(wrong.error!.message, /Cannot run 'task_b' on the queue of 'task_a'/);
        const served = replies.filter((r) => r.task_id !== "wrong");
        assert.ok(served.every((r) => r.status === "success" && r.worker.startsWith("task_a@")));
        await waitFor(
          async () => (await broker.inspectQueue(deadLetterQueueOf(qa)))?.messages === 1,
          "dead letter",
        );
      });
    } finally {
      await a.stop();
      await b.stop();
      await deleteQueues(qa, qb);
    }
  },
});

Deno.test({
  name: "a worker answers each malformed message with an error, dead-letters it and keeps serving",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("it_bad");
    const worker = await startWorkerProcess("task_a", {
      AMQP_URL,
      QUEUE: queue,
      MAX_MESSAGE_BYTES: "4096",
    });
    try {
      await withBroker(async (broker) => {
        const { replies, replyTo } = await replyCollector(broker);
        const json = "application/json";
        const cases: [string, Uint8Array, string | undefined, string][] = [
          ["not json", encoder.encode("{oops"), json, "InvalidJson"],
          ["empty", new Uint8Array(), json, "InvalidJson"],
          ["not utf-8", new Uint8Array([0xff, 0xfe, 0x7b]), json, "InvalidJson"],
          [
            "wrong content type",
            encoder.encode('{"task":"task_a"}'),
            "text/plain",
            "InvalidContentType",
          ],
          ["no content type", encoder.encode('{"task":"task_a"}'), undefined, "InvalidContentType"],
          [
            "payload a list",
            encoder.encode('{"task":"task_a","payload":[]}'),
            json,
            "InvalidRequest",
          ],
          ["no task", encoder.encode('{"payload":{}}'), json, "InvalidRequest"],
          [
            "too large",
            encoder.encode(`{"task":"task_a","payload":{"x":"${"y".repeat(5000)}"}}`),
            json,
            "MessageTooLarge",
          ],
          [
            "bad work_ms",
            encoder.encode('{"task":"task_a","payload":{"work_ms":-5}}'),
            json,
            "InvalidPayload",
          ],
        ];
        for (const [name, body, contentType] of cases) {
          await broker.publish(queue, {
            body,
            properties: { contentType, replyTo, correlationId: name },
          });
        }
        // A message without reply_to is not answered but still dead-lettered.
        await broker.publish(queue, {
          body: encoder.encode("nobody asks"),
          properties: { contentType: json },
        });
        await broker.publish(
          queue,
          encodeRequest("task_a", { work_ms: 0 }, { taskId: "valid", replyTo }),
        );
        await waitFor(() => replies.length === cases.length + 1, "a reply per request");
        for (const [name, , , type] of cases) {
          const reply = replies.find((r) => r.task_id === name);
          assert.ok(reply, `reply for ${name}`);
          assert.equal(reply.status, "error", name);
          assert.equal(reply.error?.type, type, name);
        }
        assert.equal(replies.find((r) => r.task_id === "valid")?.result, "Hello from Task A");
        const dlq = deadLetterQueueOf(queue);
        await waitFor(
          async () => (await broker.inspectQueue(dlq))?.messages === cases.length + 1,
          "dead letters",
        );
        const letter = (await broker.get(dlq))!;
        assert.equal(letter.properties.correlationId, "not json");
        assert.equal(letter.properties.headers?.["x-dlq-reason"], "rejected");
        assert.equal(new TextDecoder().decode(letter.body), "{oops");
        broker.ack(letter);
      });
    } finally {
      assert.equal(await worker.stop(), 0);
      await deleteQueues(queue);
    }
  },
});

Deno.test({
  name: "a task held by a worker killed mid-work is redelivered and answered exactly once",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("it_kill");
    const first = await startWorkerProcess("task_a", { AMQP_URL, QUEUE: queue });
    let second: RunningProcess | undefined;
    try {
      await withBroker(async (broker) => {
        const { replies, progress, replyTo } = await replyCollector(broker);
        await broker.publish(
          queue,
          encodeRequest("task_a", { work_ms: 1500 }, {
            taskId: "survivor",
            replyTo,
            progress: true,
          }),
        );
        await waitFor(() => progress.length === 1, "the first worker started the task");
        assert.equal(await first.stop("SIGKILL"), 137);
        assert.equal(replies.length, 0, "no reply before the work was done");
        second = await startWorkerProcess("task_a", { AMQP_URL, QUEUE: queue });
        await waitFor(() => replies.length === 1, "the second worker's reply", 10_000);
        const [reply] = replies;
        assert.equal(reply.task_id, "survivor");
        assert.equal(reply.status, "success");
        assert.match(reply.worker, /^task_a@/);
        // A barrier, not a pause: the second worker serves one task at a time
        // and answers in order, so a second answer to "survivor" would come
        // before the answer to a task sent after it.
        await broker.publish(
          queue,
          encodeRequest("task_a", { work_ms: 0 }, {
            taskId: "barrier",
            replyTo,
          }),
        );
        await waitFor(() => replies.some((r) => r.task_id === "barrier"), "the barrier's reply");
        assert.deepEqual(
          replies.map((r) => r.task_id),
          ["survivor", "barrier"],
          "exactly one reply",
        );
        assert.equal((await broker.inspectQueue(queue))?.messages, 0);
      });
    } finally {
      await first.stop("SIGKILL");
      await second?.stop();
      await deleteQueues(queue);
    }
  },
});

Deno.test({
  name: "deno task dispatch runs a scenario against RabbitMQ, and names a missing worker",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const qa = uniqueName("it_cli_a");
    const qb = uniqueName("it_cli_b");
    const dir = await Deno.makeTempDir();
    const config = `${dir}/test-config.yml`;
    await Deno.writeTextFile(
      config,
      `name: CLI integration
functions:
  task_a: { queue: ${qa} }
  task_b: { queue: ${qb} }
scenarios:
  basic:
    tasks:
      - { task: task_a, expect: { result: Hello from Task A } }
      - { task: task_b, expect: { result: Hello from Task B } }
`,
    );
    const a = await startWorkerProcess("task_a", { AMQP_URL, QUEUE: qa });
    try {
      const started = Date.now();
      const missing = await runDeno(
        ["task", "dispatch", "--config", config, "--wait-workers", "1", "--no-save"],
        { AMQP_URL },
      );
      assert.equal(missing.code, 3, missing.stdout + missing.stderr);
      assert.ok(Date.now() - started < 10_000, "fails within seconds");
      assert.match(missing.stderr, new RegExp(`task_b: no worker consumes '${qb}'`));
      assert.match(missing.stderr, /deno task worker task_b/);

      const b = await startWorkerProcess("task_b", { AMQP_URL, QUEUE: qb });
      try {
        const run = await runDeno(["task", "dispatch", "--config", config, "--no-save"], {
          AMQP_URL,
        });
        assert.equal(run.code, 0, run.stdout + run.stderr);
        assert.match(run.stdout, /^Loaded config: CLI integration/m);
        assert.match(run.stdout, /^Expected workers: 2$/m);
        assert.match(run.stdout, /^Dispatching tasks\.\.\.$/m);
        assert.match(
          run.stdout,
          /^Result from task_a: Hello from Task A \(\d\.\d{3} s, attempts: 1, worker: task_a@/m,
        );
        assert.match(
          run.stdout,
          /^Result from task_b: Hello from Task B \(\d\.\d{3} s, attempts: 1, worker: task_b@/m,
        );
        assert.match(run.stdout, /^Passed: 2\/2$/m);
        assert.ok(!run.stdout.includes("guest:guest"), "password masked");
      } finally {
        await b.stop();
      }
    } finally {
      await a.stop();
      await Deno.remove(dir, { recursive: true });
      await deleteQueues(qa, qb);
    }
  },
});

Deno.test({
  name: "deno task worker names a missing function and exits 2",
  ignore: false,
  async fn() {
    const run = await runDeno(["task", "worker", "task_zz"]);
    assert.equal(run.code, 2);
    assert.match(run.stderr, /functions\/task_zz\.ts does not exist: use one of task_a, task_b/);
    const bad = startDeno(["task", "worker", "task_a"], { PREFETCH: "lots" });
    assert.equal((await bad.child.status).code, 2);
    await bad.stop();
    assert.ok(bad.lines.some((line) => /PREFETCH is 'lots'/.test(line)));
  },
});

Deno.test({
  name: "deno task worker exits 2 when its module is not the function its deployment names",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    // What the deployments made from functions/registry.yaml set: here, a
    // queue the module task_a does not consume. It stops before consuming.
    // The worker itself, not through deno task: a deadline kills it, no child is left.
    const worker = startDeno(workerArgs("task_a"), {
      AMQP_URL,
      FUNCTION_NAME: "task_a",
      FUNCTION_QUEUE: "queue_b",
      METRICS_PORT: "0",
    });
    const status = await exitWithin(worker, 60_000, "the worker's refusal of its deployment");
    await worker.stop(); // Its output read to the end.
    assert.equal(status.code, 2);
    assert.ok(
      worker.lines.some((line) =>
        /defines queue 'queue_a', not 'queue_b' \(FUNCTION_QUEUE\)/.test(line)
      ),
      worker.lines.join("\n"),
    );
  },
});

Deno.test({
  name: "a worker and the dispatcher take the broker password from files",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const qa = uniqueName("it_files_a");
    const dir = await Deno.makeTempDir();
    const broker = new URL(AMQP_URL);
    const password = decodeURIComponent(broker.password);
    broker.password = "";
    const withoutPassword = broker.toString();
    await Deno.writeTextFile(`${dir}/password`, `${password}\n`);
    await Deno.writeTextFile(`${dir}/url`, AMQP_URL);
    await Deno.writeTextFile(
      `${dir}/test-config.yml`,
      `functions: { task_a: { queue: ${qa} } }
scenarios:
  one: { tasks: [{ task: task_a, payload: { work_ms: 0 }, expect: { result: Hello from Task A } }] }
`,
    );
    // The worker may read its password file and nothing else.
    const worker = startDeno(
      ["run", ...workerPermissions([`${dir}/password`]), WORKER_MAIN, "task_a"],
      { AMQP_URL: withoutPassword, AMQP_PASSWORD_FILE: `${dir}/password`, QUEUE: qa },
    );
    try {
      const starting = JSON.parse(await worker.waitForLine(/"msg":"Starting"/));
      assert.equal(starting.broker, maskUrl(AMQP_URL), "the worker logs the URL, masked");
      await worker.waitForLine(/"msg":"Consuming"/);
      const config = `${dir}/test-config.yml`;
      const byFlag = await runDeno(
        ["task", "dispatch", "--config", config, "--password-file", `${dir}/password`],
        { AMQP_URL: withoutPassword },
      );
      assert.equal(byFlag.code, 0, byFlag.stdout + byFlag.stderr);
      assert.ok(
        byFlag.stdout.includes(
          `Broker: ${maskUrl(AMQP_URL)} (password from ${dir}/password)`,
        ),
        byFlag.stdout,
      );
      // An empty AMQP_URL counts as unset, whatever this process inherited.
      const byUrlFile = await runDeno(["task", "dispatch", "--config", config], {
        AMQP_URL: "",
        AMQP_URL_FILE: `${dir}/url`,
      });
      assert.equal(byUrlFile.code, 0, byUrlFile.stdout + byUrlFile.stderr);
      assert.match(byUrlFile.stdout, /^Passed: 1\/1$/m);
    } finally {
      assert.equal(await worker.stop(), 0, worker.lines.join("\n"));
      await Deno.remove(dir, { recursive: true });
      await deleteQueues(qa);
    }
  },
});

/** GETs a worker's endpoint; resolves with the status and body. */
async function probe(port: number, path: string) {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, body: await response.text() };
}

Deno.test({
  name:
    "a worker's /healthz answers 503 until it consumes, 200 while it does, 503 once the broker goes",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("it_health");
    const { hostname, port } = new URL(AMQP_URL);
    const proxy = startGatedProxy({ hostname, port: Number(port) || 5672 });
    const metricsPort = freePort();
    const proxied = new URL(AMQP_URL);
    proxied.hostname = "127.0.0.1";
    proxied.port = String(proxy.port);
    const worker = startDeno(
      ["run", ...workerPermissions(), WORKER_MAIN, "task_a"],
      { AMQP_URL: proxied.href, QUEUE: queue, METRICS_PORT: String(metricsPort) },
    );
    try {
      await worker.waitForLine(/"msg":"Serving \/healthz and \/metrics"/);
      await worker.waitForLine(/"msg":"Broker not reachable; retrying"/);
      const before = await probe(metricsPort, "/healthz");
      assert.equal(before.status, 503, "not consuming before the broker answers");
      assert.match(
        (await probe(metricsPort, "/metrics")).body,
        /^worker_consuming\{function="task_a",queue="[^"]+"\} 0$/m,
      );

      proxy.open();
      await waitFor(async () => (await probe(metricsPort, "/healthz")).status === 200, "healthy");
      const metrics = parsePrometheus((await probe(metricsPort, "/metrics")).body);
      assert.equal(metrics.value("worker_consuming", { queue }), 1);

      proxy.cut();
      await worker.waitForLine(/"msg":"Lost the broker connection; reconnecting"/);
      await waitFor(async () => (await probe(metricsPort, "/healthz")).status === 503, "unhealthy");
      assert.equal(await worker.stop("SIGTERM"), 0);
    } finally {
      await worker.stop("SIGKILL");
      await proxy.close();
      await deleteQueues(queue);
    }
  },
});

Deno.test({
  name:
    "a dispatch against RabbitMQ is reported alike by --json, --junit, its JSON logs, the workers' logs and /metrics, and status",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const qa = uniqueName("it_obs_a");
    const qb = uniqueName("it_obs_b");
    const dir = await Deno.makeTempDir();
    const config = `${dir}/test-config.yml`;
    const junit = `results/${qa}.xml`;
    await Deno.writeTextFile(
      config,
      `name: Observed run
functions:
  task_a: { queue: ${qa} }
  task_b: { queue: ${qb} }
scenarios:
  observed:
    tasks:
      - { task: task_a, count: 3, payload: { work_ms: 20 }, expect: { result: Hello from Task A } }
      - task: task_b
        count: 2
        retries: 1
        backoff: { base_delay_ms: 20 }
        payload: { fail_attempts: 5, work_ms: 0 }
        expect: { status: error, error_type: SimulatedFailure }
`,
    );
    const ports = { a: freePort(), b: freePort() };
    const a = await startWorkerProcess("task_a", {
      AMQP_URL,
      QUEUE: qa,
      METRICS_PORT: String(ports.a),
      LOG_LEVEL: "debug",
    });
    const b = await startWorkerProcess("task_b", {
      AMQP_URL,
      QUEUE: qb,
      METRICS_PORT: String(ports.b),
    });
    try {
      for (const port of Object.values(ports)) {
        await waitFor(async () => (await probe(port, "/healthz")).status === 200, "healthy");
      }
      const run = await runDeno([
        "task",
        "-q",
        "dispatch",
        "--config",
        config,
        "--json",
        "--no-save",
        "--junit",
        junit,
        "--log-level",
        "info",
        "--log-format",
        "json",
      ], { AMQP_URL });
      assert.equal(run.code, 0, run.stderr);

      // stdout: one JSON document.
      const document: RunDocument = JSON.parse(run.stdout);
      assert.equal(document.summary.passed, 5);
      assert.equal(document.summary.successful, 3);
      assert.equal(document.summary.errors, 2);
      assert.equal(document.summary.total_retries, 2);
      assert.ok(!run.stdout.includes("guest:guest"), "password masked");
      const ours = document.workers.filter((w) => w.queue === qa || w.queue === qb);
      assert.deepEqual(ours.map((w) => w.function).sort(), ["task_a", "task_b"]);
      const ids = (task: string) =>
        new Set(document.tasks.filter((t) => t.task === task).map((t) => t.task_id));
      for (const task of document.tasks) {
        assert.match(task.worker!, task.task === "task_a" ? /^task_a@/ : /^task_b@/);
        assert.ok(task.queue_wait_ms! >= 0);
        assert.equal(task.timeline.length, task.attempts, `${task.label} timeline`);
      }

      // stderr: only JSON lines, the dispatcher's naming every task id.
      const entries = run.stderr.split("\n").filter(Boolean).map((line) => JSON.parse(line));
      const sent = new Set(entries.filter((e) => e.msg === "Task sent").map((e) => e.task_id));
      assert.deepEqual(sent, new Set(document.tasks.map((t) => t.task_id)));

      // JUnit XML.
      const suite = findAll(parseXml(await Deno.readTextFile(junit)), "testsuite")[0];
      assert.deepEqual(
        [suite.attributes.name, suite.attributes.tests, suite.attributes.failures],
        ["observed", "5", "0"],
      );
      assert.equal(findAll(suite, "testcase").length, 5);

      // /metrics: what each worker did matches what was sent.
      const metricsA = parsePrometheus((await probe(ports.a, "/metrics")).body);
      const metricsB = parsePrometheus((await probe(ports.b, "/metrics")).body);
      assert.equal(metricsA.value("worker_tasks_total", { queue: qa, status: "success" }), 3);
      assert.equal(metricsA.value("worker_tasks_total", { queue: qa, status: "error" }), 0);
      assert.equal(
        metricsA.value("worker_task_duration_seconds_count", { queue: qa, status: "success" }),
        3,
      );
      assert.ok(
        metricsA.value("worker_task_duration_seconds_sum", { queue: qa, status: "success" }) >=
          0.06,
        "three tasks of 20 ms",
      );
      assert.equal(metricsB.value("worker_tasks_total", { queue: qb, status: "error" }), 2);
      assert.equal(metricsB.value("worker_task_retries_total", { queue: qb }), 2);
      assert.equal(metricsB.value("worker_deliveries_total", { queue: qb }), 4);
      assert.equal(metricsB.value("worker_tasks_in_flight", { queue: qb }), 0);

      // deno task status: both workers, the dead letters of the failures.
      const status = await runDeno(["task", "-q", "status", "--config", config, "--json"], {
        AMQP_URL,
      });
      assert.equal(status.code, 0, status.stdout + status.stderr);
      const system: SystemStatus = JSON.parse(status.stdout);
      const queue = (name: string) => system.queues.find((q) => q.queue === name)!;
      assert.deepEqual(
        [queue(qa).consumers, queue(qa).dead_letters, queue(qa).workers],
        [1, 0, 1],
      );
      assert.deepEqual(
        [queue(qb).consumers, queue(qb).dead_letters, queue(qb).workers],
        [1, 2, 1],
      );
      const listed = system.workers.filter((w) => w.queue === qa || w.queue === qb);
      assert.deepEqual(listed.map((w) => w.tasks_done), [3, 2]);
      assert.deepEqual(listed.map((w) => w.worker), ours.map((w) => w.worker));

      // The workers' own logs: JSON lines naming the same task ids.
      const logged = (worker: RunningProcess, msg: string) =>
        new Set(
          worker.lines.map((line) => JSON.parse(line)).filter((e) => e.msg === msg).map((e) =>
            e.task_id
          ),
        );
      assert.deepEqual(logged(a, "Task succeeded"), ids("task_a"));
      assert.deepEqual(logged(a, "Task started"), ids("task_a"), "debug lines at LOG_LEVEL=debug");
      assert.deepEqual(logged(b, "Task failed"), ids("task_b"));
      assert.deepEqual(logged(b, "Task failed; retrying"), ids("task_b"));
      for (const line of b.lines) {
        const entry = JSON.parse(line);
        if (entry.task_id) {
          assert.equal(entry.function, "task_b");
          assert.equal(entry.queue, qb);
          assert.match(entry.worker, /^task_b@/);
          assert.ok(Number.isInteger(entry.attempt), line);
          assert.equal(typeof entry.duration_ms, "number", line);
        }
      }
    } finally {
      await a.stop();
      await b.stop();
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(junit).catch(() => {});
      await deleteQueues(qa, qb);
    }
  },
});
