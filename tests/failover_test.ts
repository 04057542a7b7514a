/**
 * Integration: a caller loses its broker connection in the middle of a run
 * and carries on over the next URL of its list, against the RabbitMQ at
 * `AMQP_URL`. The first URL goes through a proxy the test cuts, as a node's
 * death would cut it; the second is the broker itself.
 *
 * With a reply queue of its own the caller gets every reply exactly once
 * and the handler runs once per task; with Direct Reply-to the replies on
 * their way to the lost connection are gone, and the calls in flight time
 * out. The second case is the proof that the count of the first can fail.
 */

import assert from "node:assert/strict";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { defineFunction } from "../runtime/define_function.ts";
import { simulateWork } from "../runtime/simulate_work.ts";
import { inProcessRunner } from "../runtime/handler_runner.ts";
import { startWorker } from "../runtime/worker/consumer.ts";
import { WorkerMetrics } from "../runtime/worker/observe.ts";
import { connectBroker } from "../client/open_broker.ts";
import type { ConnectionEvent } from "../core/broker/mod.ts";
import { type CallOutcome, type ReplyMode, TaskClient } from "../client/mod.ts";
import { AMQP_URL, NEEDS_RABBITMQ } from "./_infra.ts";
import { deleteFunctionQueues, freePort, uniqueName } from "./_helpers.ts";
import { runDeno } from "./_processes.ts";
import { startGatedProxy } from "./_proxy.ts";

const TASKS = 300;
const IN_FLIGHT = 40;

async function runAcrossCut(replies: ReplyMode) {
  const queue = uniqueName("failover");
  const runs = new Map<string, number>();
  // From a third of the way in until the cut, handlers hold their answers:
  // a call in flight at the cut cannot have been answered already, however
  // late a loaded machine lets the caller read its socket.
  let holding = false;
  let release!: () => void;
  const cutMade = new Promise<void>((resolve) => release = resolve);
  const fn = defineFunction({
    name: "failover",
    queue,
    async handler(payload, context) {
      runs.set(context.taskId!, (runs.get(context.taskId!) ?? 0) + 1);
      await simulateWork(payload, context, 0);
      if (holding) await cutMade;
      return "ok";
    },
  });
  const workerBroker = await connectAmqp(AMQP_URL, { connectionName: "failover-worker" });
  const metrics = new WorkerMetrics();
  const worker = await startWorker(inProcessRunner(fn), workerBroker, {
    workerId: "failover@test",
    concurrency: 20,
    metrics,
    allowedSenders: ["*"],
  });
  const direct = new URL(AMQP_URL);
  const proxy = startGatedProxy({ hostname: direct.hostname, port: Number(direct.port) || 5672 });
  proxy.open();
  const viaProxy = new URL(AMQP_URL);
  viaProxy.hostname = "127.0.0.1";
  viaProxy.port = String(proxy.port);
  const events: ConnectionEvent[] = [];
  const url = `${viaProxy},${AMQP_URL}`;
  const opened = await connectBroker(
    {
      url,
      label: "test",
      user: direct.username || "guest",
      explicit: true,
      files: [],
      names: { caFile: "AMQP_CA_FILE", certFile: "AMQP_CERT_FILE", keyFile: "AMQP_KEY_FILE" },
    },
    { reconnect: true, replies, onConnectionEvent: (event) => events.push(event) },
  );
  const client = await TaskClient.open(opened.broker, {
    functions: new Map([["failover", { queue, user: "failover" }]]),
    replies: opened.replies,
  });
  const outcomes: CallOutcome[] = [];
  try {
    let sent = 0;
    // Calls sent while handlers hold whose request the broker confirmed: no
    // reply to them exists before the cut, and a lost Direct Reply-to
    // channel leaves them unanswered. (A request not yet confirmed at the
    // cut is published again on the next connection, with its new reply
    // address, and answered there.)
    const confirmed = new Set<string>();
    let cut = false;
    const cutWhenInFlight = () => {
      if (outcomes.length >= TASKS / 3) holding = true;
      if (cut || !holding || confirmed.size === 0) return;
      cut = true;
      proxy.cut();
      release();
    };
    const lane = async () => {
      while (sent < TASKS) {
        sent++;
        const taskId = crypto.randomUUID();
        const sentWhileHolding = holding;
        const outcome = await client.request("failover", { work_ms: 20 }, {
          timeoutMs: 4000,
          taskId,
          onSent: () => {
            if (!sentWhileHolding) return;
            confirmed.add(taskId);
            cutWhenInFlight();
          },
        });
        confirmed.delete(taskId);
        outcomes.push(outcome);
        cutWhenInFlight();
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
    assert.ok(cut, "the connection was cut with confirmed calls in flight");
    return { outcomes, runs, metrics, events, client };
  } finally {
    release();
    await client.close();
    await opened.close();
    await worker.stop(1000);
    await deleteFunctionQueues(workerBroker, queue);
    await workerBroker.close();
    await proxy.close();
  }
}

Deno.test({
  name:
    "A caller with a reply queue of its own gets every reply once across the loss of its connection",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const { outcomes, runs, metrics, events, client } = await runAcrossCut("queue");
    const kinds = Object.groupBy(outcomes, (outcome) => outcome.kind);
    assert.equal(kinds.timeout?.length ?? 0, 0, "no call timed out");
    assert.equal(kinds.reply?.length, TASKS, "one reply per task");
    assert.equal(new Set(outcomes.map((o) => o.taskId)).size, TASKS, "each task once");
    assert.equal(runs.size, TASKS, "the handler ran for every task");
    assert.ok([...runs.values()].every((n) => n === 1), "and once for each");
    assert.equal(metrics.stats.succeeded, TASKS);
    assert.deepEqual(
      events.map((event) => event.kind).filter((kind) => kind !== "retrying"),
      ["lost", "reconnected"],
    );
    console.log(
      `queue replies: ${TASKS} replies, ${client.ignored.unknown} duplicates ignored, ${metrics.stats.answeredAgain} copies answered from the record`,
    );
  },
});

Deno.test({
  name: "A caller on Direct Reply-to loses the replies in flight when its connection is lost",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const { outcomes, runs, events } = await runAcrossCut("direct");
    const timeouts = outcomes.filter((outcome) => outcome.kind === "timeout").length;
    console.log(
      `direct replies: ${timeouts} of ${TASKS} calls timed out, ${runs.size} ran; events ${
        JSON.stringify(events.map((e) => e.kind))
      }`,
    );
    assert.ok(timeouts > 0, "the calls in flight at the cut got no reply");
    assert.equal(outcomes.length, TASKS, "the other calls went on over the next connection");
  },
});

Deno.test({
  name: "status and dlq take a list of brokers whose first node is down",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const down = new URL(AMQP_URL);
    down.hostname = "127.0.0.1";
    down.port = String(freePort());
    const list = `${down},${AMQP_URL}`;
    // Exit 1 when a function has no worker; a broker it cannot reach is 3.
    const status = await runDeno(["task", "status", "--broker", list, "--json"]);
    assert.notEqual(status.code, 3, status.stderr);
    assert.equal(JSON.parse(status.stdout).broker.reachable, true);
    const dlq = await runDeno(["task", "dlq", "--broker", list, "--json"]);
    assert.equal(dlq.code, 0, dlq.stderr);
  },
});
