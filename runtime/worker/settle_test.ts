import assert from "node:assert/strict";
import type { Delivery } from "../../core/broker/broker.ts";
import { MemoryBroker } from "../../core/broker/mod.ts";
import { retryQueueOf } from "../../core/contract/mod.ts";
import { createSettler, retryQueueOptions } from "./settle.ts";

/** A request as a worker received it: anonymous (no user_id), claiming a sender of its own. */
function anonymous(headers: Record<string, unknown>): Delivery {
  return {
    body: new TextEncoder().encode('{"task":"task_a"}'),
    properties: { contentType: "application/json", messageId: "t1", headers },
    queue: "queue_a",
    exchange: "",
    routingKey: "queue_a",
    redelivered: true,
    tag: 1,
  };
}

async function published(send: (settler: ReturnType<typeof createSettler>) => Promise<void>) {
  const hub = new MemoryBroker();
  const broker = hub.connect("task_a");
  const settler = createSettler(broker, {
    queue: "queue_a",
    workerId: "task_a@test",
    queueType: "classic",
    allowedSenders: ["*", "task_a"],
  });
  try {
    for (const name of ["queue_a", "queue_a.dlq"]) await broker.declareQueue(name);
    await broker.declareQueue(
      retryQueueOf("queue_a", 100),
      retryQueueOptions("queue_a", 100, "classic"),
    );
    await send(settler);
    for (const name of [retryQueueOf("queue_a", 100), "queue_a", "queue_a.dlq"]) {
      const message = await broker.get(name);
      if (message) return message;
    }
    throw new Error("nothing published");
  } finally {
    await hub.shutdown();
  }
}

const FORGED = {
  "x-sender": "dispatcher",
  "x-prior-deliveries": 7,
  "x-delivery-count": 4,
  "x-acquired-count": 9,
  "x-dlq-reason": "exhausted",
  "x-custom": "kept",
};

Deno.test("Settler.retry() writes the runtime's x-sender, and drops a request's own when its sender is unknown", async () => {
  const retry = await published((settler) =>
    settler.retry(anonymous(FORGED), { nextAttempt: 2, delayMs: 100 })
  );
  const headers = retry.properties.headers!;
  for (const dropped of Object.keys(FORGED).filter((key) => key !== "x-custom")) {
    assert.ok(!(dropped in headers), `${dropped} dropped`);
  }
  assert.equal(headers["x-custom"], "kept");
  assert.equal(headers["x-attempt"], 2);
  assert.equal(retry.properties.userId, "task_a");
  const named = await published((settler) =>
    settler.retry(anonymous(FORGED), { nextAttempt: 2, delayMs: 100, sender: "operator" })
  );
  assert.equal(named.properties.headers!["x-sender"], "operator");
});

Deno.test("Settler.handBack() publishes a copy to the work queue with its failed deliveries and sender", async () => {
  const copy = await published((settler) =>
    settler.handBack(anonymous(FORGED), { sender: "admin", priorDeliveries: 5 })
  );
  assert.equal(copy.properties.headers!["x-sender"], "admin");
  assert.equal(copy.properties.headers!["x-prior-deliveries"], 5);
  assert.equal(copy.properties.headers!["x-delivery-count"], undefined);
  assert.equal(copy.properties.headers!["x-attempt"], undefined, "the same attempt");
  assert.equal(copy.properties.messageId, "t1");
  const none = await published((settler) =>
    settler.handBack(anonymous(FORGED), { priorDeliveries: 0 })
  );
  assert.ok(!("x-sender" in none.properties.headers!));
  assert.ok(!("x-prior-deliveries" in none.properties.headers!));
});

Deno.test("Settler.deadLetter() records the senders the worker accepts, for a replay to check", async () => {
  const letter = await published((settler) =>
    settler.deadLetter(anonymous(FORGED), {
      reason: "exhausted",
      error: { type: "Failed", message: "failed" },
      attempts: 3,
      sender: "admin",
    })
  );
  const headers = letter.properties.headers!;
  assert.equal(headers["x-dlq-allowed-senders"], "*,task_a");
  assert.equal(headers["x-dlq-sender"], "admin");
  assert.ok(!("x-sender" in headers));
});
