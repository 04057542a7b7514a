/**
 * End to end, in the containers of compose.yaml: traces and the dashboard
 * as a user runs them. An override file turns on the workers' task events
 * and OpenTelemetry, exporting to a receiver inside this test (reached from
 * the containers at host.docker.internal); the dispatcher runs on the host.
 * One task retried twice is one trace across the host and the container;
 * `deno task dashboard` watches the stack as its own `dashboard` user (which
 * the broker lets read no dead letter) and replays as `operator`.
 */

import assert from "node:assert/strict";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { deadLetterQueueOf } from "../core/contract/mod.ts";
import type { RunDocument } from "../dispatcher/report/mod.ts";
import { connectWhenUp, createStack } from "./_compose.ts";
import { readSecret } from "./_docker.ts";
import { waitFor } from "./_helpers.ts";
import { NEEDS_DOCKER } from "./_infra.ts";
import { type ReceivedSpan, startOtlpReceiver, traceTree } from "./_otlp.ts";
import { runDeno, type RunningProcess, startDeno } from "./_processes.ts";
import { holdEngine } from "./_engine_lock.ts";

Deno.test({
  name:
    "compose stack: a retried task is one trace from the host's dispatcher through the worker container; the dashboard watches as its own user",
  ignore: NEEDS_DOCKER,
  async fn(t) {
    await using _engine = await holdEngine("shared");
    const receiver = await startOtlpReceiver("0.0.0.0");
    const stack = await createStack("e2eobs");
    const override = await Deno.makeTempFile({ prefix: "e2eobs-", suffix: ".json" });
    const observed = {
      TASK_EVENTS: "true",
      ...receiver.env("(set below)", "host.docker.internal"),
    };
    const services = Object.fromEntries(
      ["worker-a", "worker-b"].map((name) => [
        name,
        { environment: { ...observed, OTEL_SERVICE_NAME: `container-${name}` } },
      ]),
    );
    await Deno.writeTextFile(override, JSON.stringify({ services }));
    const files = ["-f", "compose.yaml", "-f", override];
    let dashboard: RunningProcess | undefined;
    try {
      await stack.compose([...files, "up", "-d", "--build"]);
      const url = (user: string) => `amqp://${user}@127.0.0.1:${stack.amqpPort}`;
      const watcher = await connectWhenUp(await stack.url("dispatcher"));
      try {
        await waitFor(
          async () =>
            ((await watcher.inspectQueue("queue_a"))?.consumers ?? 0) > 0 &&
            ((await watcher.inspectQueue("queue_b"))?.consumers ?? 0) > 0,
          "both workers consume",
          90_000,
          500,
        );
      } finally {
        await watcher.close();
      }
      const token = crypto.randomUUID().replaceAll("-", "");
      dashboard = startDeno(
        ["task", "dashboard", "--port", "0", "--broker", url("dashboard")],
        { ...stack.env, DASHBOARD_TOKEN: token },
      );
      // The page's own host name (dashboard.localhost) is for browsers; programs use this.
      const base = (await dashboard.waitForLine(/^API: http:/, 30_000))
        .match(/^API: (http:\/\/[^/]+)\//)![1];
      const api = async (path: string, init: RequestInit = {}) => {
        const response = await fetch(`${base}${path}`, {
          ...init,
          headers: { authorization: `Bearer ${token}`, ...init.headers },
        });
        return { status: response.status, body: await response.json() };
      };
      await waitFor(
        async () => {
          const { body } = await api("/api/state");
          return body.mode === "live" && body.workers.length === 2;
        },
        "the dashboard sees both workers",
        30_000,
        250,
      );

      const out = `${await Deno.makeTempDir({ prefix: "e2eobs-run-" })}/run.json`;
      await t.step("a task retried twice is one trace across host and container", async () => {
        const run = await runDeno(
          [
            "task",
            "-q",
            "dispatch",
            "--scenario",
            "recovers_after_retries",
            "--broker",
            url("dispatcher"),
            "--out",
            out,
          ],
          { ...stack.env, TASK_EVENTS: "true", ...receiver.env("host-dispatcher") },
        );
        assert.equal(run.code, 0, run.stdout + run.stderr);
        const document: RunDocument = JSON.parse(await Deno.readTextFile(out));
        const { task_id: taskId } = document.tasks[0];
        let trace: ReceivedSpan[] = [];
        await waitFor(
          () => {
            const root = receiver.spans.find((s) =>
              s.name === "task_a call" && s.attributes["task.id"] === taskId
            );
            trace = receiver.spans.filter((s) => s.traceId === root?.traceId);
            return trace.some((s) => s.name === "reply") &&
              trace.filter((s) => / attempt /.test(s.name)).length === 3;
          },
          "the dispatcher's span, the container's three attempts and its reply",
          30_000,
          200,
        );
        console.log(traceTree(trace, trace[0].traceId).map((l) => `  ${l}`).join("\n"));
        const root = trace.find((s) => s.name === "task_a call")!;
        assert.equal(root.service, "host-dispatcher");
        const attempts = [1, 2, 3].map((n) => trace.find((s) => s.name === `task_a attempt ${n}`)!);
        for (const attempt of attempts) {
          assert.equal(attempt.service, "container-worker-a", "exported from the container");
          assert.equal(attempt.parentSpanId, root.spanId, "across processes and containers");
          assert.match(String(attempt.attributes["task.worker"]), /^task_a@[0-9a-f]{12}-\d+$/);
        }
        const reply = trace.find((s) => s.name === "reply")!;
        assert.equal(reply.parentSpanId, attempts[2].spanId);
      });

      await t.step("the dashboard shows the run's events, as its own user", async () => {
        const document: RunDocument = JSON.parse(await Deno.readTextFile(out));
        const { task_id: taskId } = document.tasks[0];
        await waitFor(
          async () => {
            const { body } = await api("/api/state");
            const kinds = body.events.filter((e: { task_id: string }) => e.task_id === taskId)
              .map((e: { kind: string }) => e.kind);
            return kinds.join(" ") ===
              "task-sent task-started task-retried task-started task-retried task-started task-succeeded";
          },
          "every event of the retried task, in order",
          20_000,
          250,
        );
        const { body } = await api("/api/state");
        const sent = body.events.find((e: { kind: string }) => e.kind === "task-sent");
        assert.equal(sent.sender, "dispatcher", "the stack's dispatcher sent it");
        const started = body.events.find((e: { kind: string }) => e.kind === "task-started");
        assert.equal(started.sender, "task_a", "only task_a's user speaks for task_a");
        // Present, not only equal: both undefined would be equal too.
        assert.match(String(sent.trace_id), /^[0-9a-f]{32}$/, "the sent event names a trace");
        for (const event of body.events.filter((e: { task_id: string }) => e.task_id === taskId)) {
          assert.equal(event.trace_id, sent.trace_id, `${event.kind} names the task's trace`);
        }
        const root = receiver.spans.find((s) =>
          s.name === "task_a call" && s.attributes["task.id"] === taskId
        );
        assert.equal(sent.trace_id, root?.traceId, "the trace the dispatcher exported");
        assert.deepEqual(body.warnings, []);
        // Its user watches and nothing more: it may not take a dead letter.
        const password = await readSecret(`${stack.secretsDir}/dashboard.password`);
        const asDashboard = await connectAmqp(
          `amqp://dashboard:${encodeURIComponent(password)}@127.0.0.1:${stack.amqpPort}`,
        );
        await assert.rejects(
          () => asDashboard.get(deadLetterQueueOf("queue_b")),
          /ACCESS_REFUSED.*queue_b\.dlq.*dashboard/,
        );
        await asDashboard.close().catch(() => {});
      });

      await t.step("a dead letter is listed and replayed as operator", async () => {
        const run = await runDeno(
          [
            "task",
            "-q",
            "dispatch",
            "--scenario",
            "exhausts_retries",
            "--broker",
            url("dispatcher"),
            "--no-save",
          ],
          stack.env,
        );
        assert.equal(run.code, 0, run.stdout + run.stderr);
        let letters: { reason: string }[] = [];
        await waitFor(
          async () => {
            const { body } = await api("/api/state");
            letters = body.functions.find((f: { function: string }) => f.function === "task_b")
              .letters;
            return letters.length === 1;
          },
          "task_b's dead letter on the page",
          20_000,
          250,
        );
        assert.equal(letters[0].reason, "exhausted");
        const replay = await api("/api/replay", {
          method: "POST",
          body: JSON.stringify({ function: "task_b" }),
        });
        assert.equal(replay.status, 200, JSON.stringify(replay.body));
        assert.deepEqual(replay.body, {
          function: "task_b",
          queue: "queue_b",
          replayed: 1,
          refused: [],
          as: "operator",
        });
      });
    } finally {
      if (dashboard) assert.equal(await dashboard.stop("SIGTERM"), 0, dashboard.lines.join("\n"));
      await stack.down();
      await receiver.close();
      await Deno.remove(override);
    }
  },
});
