/**
 * Celery clients calling a function, in process on the in-memory broker:
 * protocol 2 requests in, `rpc://` results out.
 */

import assert from "node:assert/strict";
import { MemoryBroker } from "../../core/broker/mod.ts";
import { deadLetterQueueOf, type Message } from "../../core/contract/mod.ts";
import { defineFunction } from "../define_function.ts";
import { simulateWork } from "../simulate_work.ts";
import { inProcessRunner } from "../handler_runner.ts";
import { ETA_SLACK_MS } from "./delivery_facts.ts";
import { startWorker } from "./consumer.ts";
import { waitFor } from "../../tests/_helpers.ts";

const encoder = new TextEncoder();
const EMBED = { callbacks: null, errbacks: null, chain: null, chord: null };

let runs = 0;
const add = defineFunction({
  name: "adder",
  queue: "queue_adder",
  celeryNames: ["tasks.add"],
  retry: { maxRetries: 1, baseDelayMs: 1 },
  async handler(payload, context) {
    runs++;
    await simulateWork(payload, context, 0);
    const [a, b] = (payload.args ?? [0, 0]) as number[];
    return a + b;
  },
});

async function setup() {
  runs = 0;
  const hub = new MemoryBroker();
  const worker = await startWorker(inProcessRunner(add), hub.connect("adder"), {
    workerId: "adder@test",
  });
  // The worker made the route Celery clients publish through: the exchange named after its queue.
  const client = hub.connect("celery_client");
  const results = new Map<string, Record<string, unknown>>();
  const replyTo = await client.openReplyQueue((message) => {
    results.set(
      message.properties.correlationId!,
      JSON.parse(new TextDecoder().decode(message.body)),
    );
  });
  const request = (
    id: string,
    body: unknown,
    headers: Record<string, unknown> = {},
  ): Message => ({
    body: encoder.encode(JSON.stringify(body)),
    properties: {
      contentType: "application/json",
      contentEncoding: "utf-8",
      correlationId: id,
      replyTo,
      headers: {
        lang: "py",
        task: "tasks.add",
        id,
        retries: 0,
        timelimit: [null, null],
        ...headers,
      },
    },
  });
  return {
    hub,
    client,
    results,
    /** Publishes as a Celery client does: through the exchange named after the queue. */
    delay(id: string, body: unknown, headers?: Record<string, unknown>) {
      return client.publishToExchange("queue_adder", request(id, body, headers), "queue_adder");
    },
    request,
    async close() {
      await worker.stop(0);
      await hub.shutdown();
    },
  };
}

Deno.test("a Celery client's task runs and its result comes back as rpc:// expects", async () => {
  const t = await setup();
  try {
    await t.delay("c1", [[2, 3], {}, EMBED]);
    await waitFor(() => t.results.has("c1"), "the result");
    const result = t.results.get("c1")!;
    assert.equal(result.status, "SUCCESS");
    assert.equal(result.result, 5);
    assert.equal(result.task_id, "c1");
  } finally {
    await t.close();
  }
});

Deno.test("a failing Celery task is retried on our side, then answered FAILURE and dead-lettered", async () => {
  const t = await setup();
  try {
    await t.delay("c2", [[], { fail_attempts: 5 }, EMBED]);
    await waitFor(() => t.results.has("c2"), "the result");
    const result = t.results.get("c2")!;
    assert.equal(result.status, "FAILURE");
    assert.deepEqual(result.result, {
      exc_type: "SimulatedFailure",
      exc_message: ["Failing attempt 2 as the payload asks the first 5 to fail"],
      exc_module: "celery.exceptions",
    });
    assert.equal(runs, 2, "one retry, as the function's policy says");
    const letter = (await t.client.get(deadLetterQueueOf("queue_adder")))!;
    assert.equal(letter.properties.headers?.["x-dlq-reason"], "exhausted");
  } finally {
    await t.close();
  }
});

Deno.test("Celery features Deno functions do not support are refused with a FAILURE naming them", async () => {
  const t = await setup();
  try {
    await t.delay("c3", [[1, 1], {}, { ...EMBED, chain: [{ task: "tasks.add" }] }]);
    await t.delay("c4", [[1, 1], {}, EMBED], { task: "tasks.unknown" });
    await waitFor(() => t.results.size === 2, "two results");
    assert.equal(t.results.get("c3")!.status, "FAILURE");
    assert.match(
      String((t.results.get("c3")!.result as { exc_message: string[] }).exc_message),
      /'chain'/,
    );
    assert.equal(
      (t.results.get("c4")!.result as { exc_type: string }).exc_type,
      "NotRegistered",
    );
    assert.equal(runs, 0);
  } finally {
    await t.close();
  }
});

Deno.test("Celery's eta waits in the broker and expires is a deadline", async () => {
  const t = await setup();
  try {
    const sent = Date.now();
    await t.delay("later", [[1, 2], {}, EMBED], {
      eta: new Date(sent + 300).toISOString(),
    });
    await t.delay("too-late", [[1, 2], {}, EMBED], {
      expires: new Date(sent - 1000).toISOString(),
    });
    await waitFor(() => t.results.size === 2, "two results");
    assert.equal(t.results.get("later")!.result, 3);
    // A task whose eta is within ETA_SLACK_MS runs at once: that is the soonest it may run.
    assert.ok(Date.now() - sent >= 300 - ETA_SLACK_MS, "it ran no sooner than its eta");
    assert.equal(
      (t.results.get("too-late")!.result as { exc_type: string }).exc_type,
      "DeadlineExceeded",
    );
  } finally {
    await t.close();
  }
});

Deno.test("a Celery-shaped request through the default exchange from another user is unauthenticated", async () => {
  const t = await setup();
  try {
    const intruder = t.hub.connect("task_other");
    await intruder.publish("queue_adder", t.request("sneaky", [[1, 1], {}, EMBED]));
    await waitFor(
      async () => (await t.client.inspectQueue(deadLetterQueueOf("queue_adder")))?.messages === 1,
      "a dead letter",
    );
    const letter = (await t.client.get(deadLetterQueueOf("queue_adder")))!;
    assert.equal(letter.properties.headers?.["x-dlq-reason"], "unauthenticated");
    assert.equal(runs, 0);
  } finally {
    await t.close();
  }
});
