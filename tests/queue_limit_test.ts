/**
 * A vhost whose queue limit (`max-queues`) is used up, as a low-privilege
 * client can use it up (review F3), against the RabbitMQ at `AMQP_URL` with a
 * real worker process: every queue a worker needs is declared while it
 * starts, so with the limit reached it still starts, serves and schedules
 * retries; only its control queue, new at each start, is refused, which
 * leaves pings unanswered until the queue opens.
 */

import assert from "node:assert/strict";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import {
  CONTROL_EXCHANGE,
  encodePing,
  encodeRequest,
  type Message,
  parseReply,
  parseWorkerInfo,
  RETRY_DELAYS_MS,
} from "../core/contract/mod.ts";
import { AMQP_URL, NEEDS_RABBITMQ } from "./_infra.ts";
import { uniqueName, waitFor } from "./_helpers.ts";
import { manage } from "./_management.ts";
import { startWorkerProcess } from "./_processes.ts";

/** The queues a worker declares before its control queue: work, dead letters, one per retry delay. */
const WORKER_QUEUES = 2 + RETRY_DELAYS_MS.length;

async function setLimit(vhost: string, queues: number): Promise<void> {
  const response = await manage("PUT", `vhost-limits/${vhost}/max-queues`, { value: queues });
  assert.ok(response.ok, `max-queues ${queues}: ${response.status}`);
}

Deno.test({
  name:
    "with the vhost's queue limit reached, a worker starts, serves and retries; its pings resume once its control queue opens",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const vhost = uniqueName("limits");
    const user = decodeURIComponent(new URL(AMQP_URL).username);
    assert.ok((await manage("PUT", `vhosts/${vhost}`)).ok, "vhost made");
    const url = new URL(AMQP_URL);
    url.pathname = `/${vhost}`;
    try {
      const granted = await manage("PUT", `permissions/${vhost}/${user}`, {
        configure: ".*",
        write: ".*",
        read: ".*",
      });
      assert.ok(granted.ok);
      // Room for the worker's own queues, none for its control queue.
      await setLimit(vhost, WORKER_QUEUES);
      const worker = await startWorkerProcess("task_a", { AMQP_URL: url.href, QUEUE: "queue_a" });
      const broker = await connectAmqp(url.href, { connectionName: "queue-limit-test" });
      try {
        assert.ok(
          worker.lines.some((l) => l.includes("Cannot open the control queue")),
          worker.lines.join("\n"),
        );
        await assert.rejects(
          () => broker.declareQueue("replies_of_a_client"),
          /queue limit in vhost .* is reached/,
          "the vhost is full",
        );
        const answers: Message[] = [];
        const replyTo = await broker.openReplyQueue((message) => answers.push(message));
        // A task that fails once: its retry waits in a queue declared at start.
        await broker.publish(
          "queue_a",
          encodeRequest("task_a", { fail_attempts: 1, work_ms: 0 }, {
            taskId: "retried",
            replyTo,
            retry: { base_delay_ms: 100 },
          }),
        );
        await waitFor(() => answers.length === 1, "the retried task's reply", 15_000);
        const reply = parseReply(answers[0].body);
        assert.ok(reply.ok && reply.value.status === "success", JSON.stringify(reply));
        assert.equal(reply.value.attempts, 2);

        await setLimit(vhost, WORKER_QUEUES + 1);
        await worker.waitForLine(/Opened the control queue: answering pings/, 30_000);
        await broker.publishToExchange(CONTROL_EXCHANGE, encodePing("after", replyTo));
        await waitFor(() => answers.length === 2, "the pong");
        const pong = parseWorkerInfo(answers[1].body);
        assert.ok(pong.ok && pong.value.queue === "queue_a", JSON.stringify(pong));
      } finally {
        await broker.close();
        assert.equal(await worker.stop(), 0, worker.lines.join("\n"));
      }
    } finally {
      await manage("DELETE", `vhosts/${vhost}`);
    }
  },
});
