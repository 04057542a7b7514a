/**
 * Cancellation against the RabbitMQ at `AMQP_URL`, with host worker
 * processes and `deno task cancel` as a process: a running attempt (a busy
 * loop that never yields) is stopped and its sandbox ended about a second
 * later; a queued call never starts; a call cancelled before its worker
 * started never starts either.
 */

import assert from "node:assert/strict";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import {
  deadLetterQueueOf,
  encodeRequest,
  parseReply,
  type TaskReply,
} from "../core/contract/mod.ts";
import { TaskClient } from "../client/task_client.ts";
import { AMQP_URL, NEEDS_RABBITMQ } from "./_infra.ts";
import { deleteFunctionQueues, uniqueName, waitFor } from "./_helpers.ts";
import { runDeno, startWorkerProcess } from "./_processes.ts";
import { withTempDir } from "./_temp_dir.ts";

const ESCAPE = "tests/fixtures/functions/escape.ts";
/** The same with a two-minute attempt limit: the busy loop outlives two `deno task cancel` runs. */
const PATIENT = "tests/fixtures/functions/escape_patient.ts";

/** A configuration naming the escape fixture on `queue`, its workers running as guest. */
const configOf = (queue: string) =>
  `functions:\n  escape: { queue: ${queue}, user: guest }\n` +
  "scenarios:\n  s: { tasks: [{ task: escape }] }\n";

/** The lines a worker logged for `msg` and the task `id`. */
const logged = (lines: string[], msg: string, id: string) =>
  lines.filter((line) => line.includes(`"msg":"${msg}"`) && line.includes(`"task_id":"${id}"`));

function cancelTool(config: string, ...ids: string[]) {
  return runDeno(
    ["task", "-q", "cancel", "--config", config, "--broker", AMQP_URL, ...ids],
    {},
    { timeoutMs: 60_000 },
  );
}

Deno.test({
  name:
    "deno task cancel stops a running busy loop (its sandbox ended about a second later) and keeps a queued call from starting, with host workers",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("cancel");
    const worker = await startWorkerProcess(PATIENT, {
      AMQP_URL,
      QUEUE: queue,
      LOG_LEVEL: "debug",
      CONCURRENCY: "1",
    });
    const broker = await connectAmqp(AMQP_URL, { connectionName: "cancel-test" });
    const client = await TaskClient.open(broker, {
      functions: new Map([["escape", { queue, user: "guest" }]]),
      timeoutMs: 120_000,
    });
    try {
      await withTempDir(async (dir) => {
        const config = `${dir}/config.yml`;
        await Deno.writeTextFile(config, configOf(queue));
        const busy = await client.submit("escape", { attempt: "spin", target: "600000" });
        const queued = await client.submit("escape", {}, { taskId: `${busy}-queued` });
        await waitFor(() => logged(worker.lines, "Task started", busy).length === 1, "busy loop");

        // The queued call first: no worker runs it, and it will not start.
        const first = await cancelTool(config, queued);
        assert.equal(first.code, 0, first.stdout + first.stderr);
        assert.match(first.stdout, /no worker runs it now, and it will not start/);

        const cancelledAt = Date.now();
        const second = await cancelTool(config, busy);
        assert.equal(
          second.code,
          0,
          `${second.stdout}${second.stderr}\nthe worker's last lines:\n${
            worker.lines.slice(-15).join("\n")
          }`,
        );
        assert.match(second.stdout, new RegExp(`Cancelled call ${busy}: its running attempt on`));
        const outcome = await client.result(busy, { timeoutMs: 30_000 });
        assert.equal(outcome.kind === "reply" && outcome.reply.error?.type, "Cancelled");

        // The busy loop never yields: its sandbox is ended, a second's grace after the cancel.
        await waitFor(
          () => worker.lines.some((line) => line.includes("did not answer")),
          "the stuck sandbox ended",
          30_000,
        );
        const ended = worker.lines.find((line) => line.includes("did not answer"))!;
        const endedAfter = Date.parse(JSON.parse(ended).ts) - cancelledAt;
        assert.ok(endedAfter >= 900, `ended ${endedAfter} ms after the cancel: it had a second`);
        assert.ok(endedAfter < 20_000, `ended ${endedAfter} ms after the cancel`);

        const late = await client.result(queued, { timeoutMs: 30_000 });
        assert.equal(late.kind === "reply" && late.reply.error?.type, "Cancelled");
        assert.deepEqual(logged(worker.lines, "Task started", queued), [], "it never started");

        const dlq = deadLetterQueueOf(queue);
        await waitFor(async () => (await broker.inspectQueue(dlq))?.messages === 2, "2 letters");
        for (let i = 0; i < 2; i++) {
          const letter = (await broker.get(dlq))!;
          broker.ack(letter);
          assert.equal(letter.properties.headers?.["x-dlq-reason"], "cancelled");
        }

        // Twice, or a finished call: harmless, and said so.
        const again = await cancelTool(config, busy);
        assert.equal(again.code, 1, again.stdout + again.stderr);
        assert.match(again.stdout, /Nothing to cancel: call .* was cancelled already/);
        const served = await client.submit("escape", {});
        assert.equal((await client.result(served)).kind, "reply");
        const finished = await cancelTool(config, served);
        assert.equal(finished.code, 1, finished.stdout + finished.stderr);
        assert.match(finished.stdout, /Nothing to cancel: call .* had finished on .* \(success\)/);
      });
    } finally {
      await client.close();
      assert.equal(await worker.stop(), 0, worker.lines.slice(-20).join("\n"));
      await deleteFunctionQueues(broker, queue).catch(() => {});
      await broker.close();
    }
  },
});

Deno.test({
  name:
    "a call cancelled before its worker started never starts: the worker reads the cancellations stream before it takes requests",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("cancel_late");
    const broker = await connectAmqp(AMQP_URL, { connectionName: "cancel-late-test" });
    const replies = new Map<string, TaskReply>();
    // A first worker makes the queues, then goes.
    const first = await startWorkerProcess(ESCAPE, { AMQP_URL, QUEUE: queue });
    assert.equal(await first.stop(), 0);
    const client = await TaskClient.open(broker, {
      functions: new Map([["escape", { queue, user: "guest" }]]),
    });
    const caller = await connectAmqp(AMQP_URL, { connectionName: "cancel-late-caller" });
    try {
      const replyTo = await caller.openReplyQueue((message) => {
        const reply = parseReply(message.body);
        if (reply.ok) replies.set(reply.value.task_id!, reply.value);
      });
      const id = `${queue}-early`;
      // The request waits in the queue with no worker; its cancellation is sent meanwhile.
      await caller.publish(queue, encodeRequest("escape", {}, { taskId: id, replyTo }));
      const cancelled = await client.cancel(id, { waitMs: 200 });
      assert.equal(cancelled.status, "not_running");
      const worker = await startWorkerProcess(ESCAPE, {
        AMQP_URL,
        QUEUE: queue,
        LOG_LEVEL: "debug",
      });
      try {
        await waitFor(() => replies.has(id), "the answer of the cancelled call", 30_000);
        assert.equal(replies.get(id)?.error?.type, "Cancelled");
        assert.deepEqual(logged(worker.lines, "Task started", id), [], "it never started");
      } finally {
        assert.equal(await worker.stop(), 0);
      }
    } finally {
      await client.close();
      await caller.close();
      await deleteFunctionQueues(broker, queue).catch(() => {});
      await broker.close();
    }
  },
});
