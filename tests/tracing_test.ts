/**
 * Traces across processes, against the RabbitMQ at `AMQP_URL`: an OTLP
 * receiver inside the test collects what `deno task dispatch`, two worker
 * processes and `deno task dlq --replay` export through Deno's built-in
 * OpenTelemetry, and the test follows each task's trace from the
 * dispatcher's span through every attempt, whichever worker ran it.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { encodeRequest, parseReply, type TaskReply } from "../core/contract/mod.ts";
import type { RunDocument } from "../dispatcher/report/mod.ts";
import { AMQP_URL, NEEDS_RABBITMQ } from "./_infra.ts";
import { deleteFunctionQueues, uniqueName, waitFor } from "./_helpers.ts";
import { type ReceivedSpan, startOtlpReceiver, traceTree } from "./_otlp.ts";
import {
  exitWithin,
  runDeno,
  type RunningProcess,
  startDeno,
  startWorkerProcess,
} from "./_processes.ts";

const CONSUMER = 5;
const CLIENT = 3;
const PRODUCER = 4;

function configFor(queue: string): string {
  return `
name: Tracing check
default_scenario: retried
functions:
  task_b: { queue: ${queue} }
scenarios:
  retried:
    tasks:
      - task: task_b
        retries: 2
        backoff: { base_delay_ms: 2000, factor: 1 }
        payload: { fail_attempts: 2, work_ms: 5 }
        expect: { result: Hello from Task B }
  dead:
    tasks:
      - task: task_b
        retries: 0
        payload: { fail_attempts: 9 }
        expect: { status: error, error_type: SimulatedFailure }
`;
}

/** The one span named `name` among `spans`; fails listing them otherwise. */
function only(spans: ReceivedSpan[], name: string | RegExp): ReceivedSpan {
  const found = spans.filter((s) => typeof name === "string" ? s.name === name : name.test(s.name));
  assert.equal(found.length, 1, `one span ${name} in ${spans.map((s) => s.name).join(", ")}`);
  return found[0];
}

Deno.test({
  name:
    "a task retried twice is one trace: the dispatcher's span, three attempts on two worker processes, the reply; a replay continues it",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const receiver = await startOtlpReceiver();
    const queue = uniqueName("it_trace");
    const dir = await Deno.makeTempDir({ prefix: "tracing-" });
    const config = `${dir}/config.yml`;
    await Deno.writeTextFile(config, configFor(queue));
    const workers: RunningProcess[] = [];
    const startWorker = async (name: string) =>
      workers.push(
        await startWorkerProcess("task_b", {
          AMQP_URL,
          QUEUE: queue,
          WORKER_ID: `task_b@${name}`,
          ...receiver.env(name),
        }),
      );
    try {
      await startWorker("worker-1");
      const out = `${dir}/run.json`;
      const dispatcher = startDeno(
        [
          "task",
          "-q",
          "dispatch",
          "--config",
          config,
          "--scenario",
          "retried",
          "--broker",
          AMQP_URL,
          "--out",
          out,
          "--log-level",
          "info",
          "--log-format",
          "json",
        ],
        receiver.env("dispatcher"),
      );
      // The first attempt runs on worker-1, the only consumer. Once it failed,
      // worker-1 stops (its retry waits in the broker, 1.5 s or more) and
      // worker-2 starts: the retries run there, so the attempts run on both.
      await waitFor(
        () => workers[0].lines.some((line) => line.includes('"msg":"Task failed; retrying"')),
        "the first attempt failing on worker-1",
        60_000,
        50,
      );
      assert.equal(await workers[0].stop(), 0);
      await startWorker("worker-2");
      const { code } = await exitWithin(dispatcher, 120_000, "the dispatch of the retried task");
      const run = {
        code,
        stderr: dispatcher.lines.filter((line) => line.startsWith("{")).join("\n"),
      };
      assert.equal(run.code, 0, dispatcher.lines.join("\n"));
      const document: RunDocument = JSON.parse(await Deno.readTextFile(out));
      const taskId = document.tasks[0].task_id;
      assert.equal(document.tasks[0].attempts, 3);

      // The dispatcher exported its span as it exited; the workers export in batches.
      const call = () =>
        receiver.spans.find((s) => s.name === "task_b call" && s.attributes["task.id"] === taskId);
      let trace: ReceivedSpan[] = [];
      await waitFor(
        () => {
          const root = call();
          trace = root ? receiver.spans.filter((s) => s.traceId === root.traceId) : [];
          return trace.filter((s) => s.name === "reply").length === 1 &&
            trace.filter((s) => / attempt \d$/.test(s.name)).length === 3;
        },
        "the dispatcher's span, three attempts and the reply reach the receiver",
        30_000,
        100,
      );
      console.log(traceTree(receiver.spans, trace[0].traceId).map((l) => `  ${l}`).join("\n"));

      const root = call()!;
      assert.equal(root.service, "dispatcher");
      assert.equal(root.parentSpanId, "", "the dispatcher starts the trace");
      assert.equal(root.kind, CLIENT);
      assert.equal(root.attributes["task.function"], "task_b");
      assert.equal(root.attributes["task.queue"], queue);
      assert.equal(root.attributes["task.outcome"], "success");
      assert.equal(root.attributes["task.attempts"], 3);

      const attempts = [1, 2, 3].map((n) => only(trace, `task_b attempt ${n}`));
      for (const [i, attempt] of attempts.entries()) {
        assert.equal(attempt.parentSpanId, root.spanId, "each attempt is a child of the call");
        assert.equal(attempt.kind, CONSUMER);
        assert.match(attempt.service, /^worker-[12]$/);
        if (i === 0) assert.equal(attempt.service, "worker-1", "the first attempt, on worker-1");
        if (i === 2) assert.equal(attempt.service, "worker-2", "the last attempt, on worker-2");
        assert.equal(attempt.attributes["task.id"], taskId);
        assert.equal(attempt.attributes["task.attempt"], i + 1);
        assert.equal(attempt.attributes["task.worker"], `task_b@${attempt.service}`);
        assert.equal(attempt.attributes["task.outcome"], i < 2 ? "retry" : "success");
        // Same clock: the attempt starts within the call (it ends after the
        // reply it sent, so possibly after the call).
        assert.ok(attempt.startNs >= root.startNs && attempt.startNs <= root.endNs);
      }
      const waits = trace.filter((s) => s.name === `${queue} wait`);
      assert.equal(waits.length, 3, "one wait in the queue per attempt");
      for (const wait of waits) assert.equal(wait.parentSpanId, root.spanId);
      const retries = trace.filter((s) => s.name === "retry");
      assert.deepEqual(
        retries.map((s) => s.parentSpanId).sort(),
        [attempts[0].spanId, attempts[1].spanId].sort(),
        "each failed attempt published its retry",
      );
      for (const retry of retries) assert.equal(retry.kind, PRODUCER);
      const reply = only(trace, "reply");
      assert.equal(reply.parentSpanId, attempts[2].spanId, "the last attempt sent the reply");
      assert.equal(reply.attributes["task.status"], "success");

      // Logs name the same trace: the dispatcher's lines its span, the workers' their attempt.
      const finished = run.stderr.split("\n").filter(Boolean).map((l) => JSON.parse(l))
        .find((e) => e.msg === "Task finished");
      assert.equal(finished?.trace_id, root.traceId, run.stderr);
      assert.equal(finished?.span_id, root.spanId);
      const workerLines = workers.flatMap((w) => w.lines).filter((l) => l.includes(taskId))
        .map((l) => JSON.parse(l));
      const retried = workerLines.filter((e) => e.msg === "Task failed; retrying");
      assert.equal(retried.length, 2);
      for (const entry of [...retried, ...workerLines.filter((e) => e.msg === "Task succeeded")]) {
        assert.equal(entry.trace_id, root.traceId);
        assert.equal(entry.span_id, attempts[entry.attempt - 1].spanId, JSON.stringify(entry));
      }

      // A dead letter, replayed: the replay joins the task's trace, and the
      // attempt it leads to is the replay's child.
      const dead = await runDeno(
        [
          "task",
          "-q",
          "dispatch",
          "--config",
          config,
          "--scenario",
          "dead",
          "--broker",
          AMQP_URL,
          "--no-save",
        ],
        receiver.env("dispatcher"),
      );
      assert.equal(dead.code, 0, dead.stdout + dead.stderr);
      const replay = await runDeno(
        ["task", "-q", "dlq", "--queue", queue, "--replay", "--broker", AMQP_URL],
        receiver.env("operator"),
      );
      assert.equal(replay.code, 0, replay.stdout + replay.stderr);
      assert.match(replay.stdout, /replayed 1 of 1/);
      let replayed: ReceivedSpan | undefined;
      await waitFor(
        () => {
          replayed = receiver.spans.find((s) => s.name === `${queue} replay`);
          const trace = receiver.spans.filter((s) => s.traceId === replayed?.traceId);
          return trace.filter((s) => s.name === "dead letter").length === 2 &&
            trace.filter((s) => / attempt /.test(s.name)).length === 2;
        },
        "the replay's span, and both attempts with their dead letters",
        30_000,
        100,
      );
      console.log(traceTree(receiver.spans, replayed!.traceId).map((l) => `  ${l}`).join("\n"));
      const deadRoot = receiver.spans.find((s) =>
        s.traceId === replayed!.traceId && s.name === "task_b call"
      );
      assert.ok(deadRoot, "the replayed task's trace starts at its dispatcher's span");
      assert.equal(replayed!.parentSpanId, deadRoot.spanId);
      assert.equal(replayed!.service, "operator");
      assert.equal(replayed!.attributes["task.reason"], "exhausted");
      const first = only(
        receiver.spans.filter((s) => s.parentSpanId === deadRoot.spanId),
        / attempt /,
      );
      assert.equal(first.attributes["task.outcome"], "exhausted");
      only(receiver.spans.filter((s) => s.parentSpanId === first.spanId), "dead letter");
      const children = receiver.spans.filter((s) => s.parentSpanId === replayed!.spanId);
      const again = only(children, / attempt /);
      assert.equal(again.name, "task_b attempt 1", "attempts start again at 1 after a replay");
      assert.equal(again.attributes["task.outcome"], "exhausted");
      const wait = only(children, / wait$/);
      // Not from the first send: the replay sets x-sent-at anew.
      assert.ok(wait.startNs > deadRoot.endNs, "the replayed request waits from its replay");
    } finally {
      for (const worker of workers) await worker.stop();
      const broker = await connectAmqp(AMQP_URL);
      await deleteFunctionQueues(broker, queue);
      await broker.close();
      await receiver.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "with OpenTelemetry off, neither the dispatcher nor the worker logs trace ids",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("it_untraced");
    const worker = await startWorkerProcess("task_b", { AMQP_URL, QUEUE: queue });
    const dir = await Deno.makeTempDir({ prefix: "untraced-" });
    const config = `${dir}/config.yml`;
    await Deno.writeTextFile(config, configFor(queue));
    try {
      const run = await runDeno([
        "task",
        "-q",
        "dispatch",
        "--config",
        config,
        "--scenario",
        "retried",
        "--broker",
        AMQP_URL,
        "--no-save",
        "--log-level",
        "info",
        "--log-format",
        "json",
      ]);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      assert.ok(!run.stderr.includes("trace_id"), run.stderr);
      await waitFor(
        () => worker.lines.some((l) => l.includes('"msg":"Task succeeded"')),
        "the worker logs the task",
      );
      assert.ok(!worker.lines.some((l) => l.includes("trace_id")), worker.lines.join("\n"));
    } finally {
      await worker.stop();
      const broker = await connectAmqp(AMQP_URL);
      await deleteFunctionQueues(broker, queue);
      await broker.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "a traceparent that is not text, over 512 characters or malformed is ignored: the task runs, in a trace of its own",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const receiver = await startOtlpReceiver();
    const queue = uniqueName("it_bad_trace");
    const worker = await startWorkerProcess("task_b", {
      AMQP_URL,
      QUEUE: queue,
      ...receiver.env("worker"),
    });
    const broker = await connectAmqp(AMQP_URL);
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const spanId = "00f067aa0ba902b7";
    const valid = `00-${traceId}-${spanId}-01`;
    const headers: Record<string, Record<string, unknown>> = {
      "not-text": { traceparent: 12345 },
      // Bytes, as AMQP carries a byte array: not UTF-8.
      "not-utf-8": { traceparent: Buffer.from([0xff, 0xfe, 0x2d, 0x00]) },
      "too-long": { traceparent: valid + "-" + "0".repeat(600) },
      "malformed": { traceparent: "00-not-a-trace-context" },
      "long-state": { traceparent: valid, tracestate: `k=${"v".repeat(600)}` },
      "valid": { traceparent: valid },
    };
    try {
      const replies = new Map<string, TaskReply>();
      const replyTo = await broker.openReplyQueue((message) => {
        const parsed = parseReply(message.body);
        if (parsed.ok) replies.set(parsed.value.task_id!, parsed.value);
      });
      for (const [taskId, extra] of Object.entries(headers)) {
        await broker.publish(
          queue,
          encodeRequest("task_b", { work_ms: 0 }, { taskId, replyTo, headers: extra }),
        );
      }
      const ids = Object.keys(headers);
      await waitFor(() => ids.every((id) => replies.has(id)), "every reply");
      for (const id of ids) assert.equal(replies.get(id)!.status, "success", id);
      const attempt = (id: string) =>
        receiver.spans.find((s) => / attempt 1$/.test(s.name) && s.attributes["task.id"] === id);
      await waitFor(() => ids.every((id) => attempt(id)), "every attempt's span", 30_000, 100);
      for (const id of ["not-text", "not-utf-8", "too-long", "malformed"]) {
        const span = attempt(id)!;
        assert.equal(span.parentSpanId, "", `${id}: a trace of its own`);
        assert.notEqual(span.traceId, traceId, id);
      }
      // A valid traceparent is followed, even when its tracestate is too long to read.
      for (const id of ["long-state", "valid"]) {
        assert.equal(attempt(id)!.traceId, traceId, id);
        assert.equal(attempt(id)!.parentSpanId, spanId, id);
      }
    } finally {
      await worker.stop();
      await deleteFunctionQueues(broker, queue);
      await broker.close();
      await receiver.close();
    }
  },
});
