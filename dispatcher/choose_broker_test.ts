import assert from "node:assert/strict";
import { BrokerUnavailableError } from "../functions/_runtime/broker/broker.ts";
import { MemoryBroker } from "../functions/_runtime/broker/memory_broker.ts";
import { chooseBroker, type ChooseBrokerOptions, LOCAL_AMQP_URL } from "./choose_broker.ts";
import type { Embedded } from "../functions/_runtime/embedded.ts";

function options(overrides: Partial<ChooseBrokerOptions>) {
  const calls = { connect: [] as string[], embedded: 0 };
  const hub = new MemoryBroker();
  const base: ChooseBrokerOptions = {
    local: false,
    functions: [{ task: "task_a", queue: "queue_a" }],
    connect: (url) => {
      calls.connect.push(url);
      return Promise.resolve(hub.connect());
    },
    startEmbedded: () => {
      calls.embedded++;
      const embedded: Embedded = {
        connect: () => hub.connect(),
        stop: () => hub.shutdown(),
      };
      return Promise.resolve(embedded);
    },
    ...overrides,
  };
  return { base, calls, hub };
}

const unreachable = () =>
  Promise.reject(new BrokerUnavailableError("nothing listening", { unreachable: true }));

Deno.test("chooseBroker() uses the embedded broker with --local and connects nowhere", async () => {
  const { base, calls, hub } = options({ local: true });
  const choice = await chooseBroker(base);
  assert.ok(choice.embedded);
  assert.equal(choice.notice, undefined);
  assert.deepEqual(calls.connect, []);
  await hub.shutdown();
});

Deno.test("chooseBroker() fails for an explicit broker that does not answer, without fallback", async () => {
  const { base, calls, hub } = options({ url: "amqp://u:p@broker:5672", connect: unreachable });
  await assert.rejects(() => chooseBroker(base), BrokerUnavailableError);
  assert.equal(calls.embedded, 0);
  await hub.shutdown();
});

Deno.test("chooseBroker() connects to an explicit broker and masks its password", async () => {
  const { base, calls, hub } = options({ url: "amqp://u:secret@broker:5672" });
  const choice = await chooseBroker(base);
  assert.deepEqual(calls.connect, ["amqp://u:secret@broker:5672"]);
  assert.equal(choice.label, "amqp://u:***@broker:5672");
  assert.equal(choice.embedded, undefined);
  await hub.shutdown();
});

Deno.test("chooseBroker() tries localhost, then falls back to the embedded broker with a notice", async () => {
  const { base, calls, hub } = options({ connect: unreachable });
  const choice = await chooseBroker(base);
  assert.equal(calls.embedded, 1);
  assert.match(choice.notice!, /embedded broker/);
  assert.match(choice.notice!, /docker compose up -d --build/);
  await hub.shutdown();
});

Deno.test("chooseBroker() does not fall back when localhost answers but refuses", async () => {
  const { base, calls, hub } = options({
    connect: () => Promise.reject(new BrokerUnavailableError("refused the password")),
  });
  await assert.rejects(() => chooseBroker(base), /refused the password/);
  assert.equal(calls.embedded, 0);
  await hub.shutdown();
});

Deno.test("chooseBroker() uses localhost when it answers", async () => {
  const { base, calls, hub } = options({});
  const choice = await chooseBroker(base);
  assert.deepEqual(calls.connect, [LOCAL_AMQP_URL]);
  assert.equal(choice.embedded, undefined);
  await hub.shutdown();
});

Deno.test("chooseBroker() probes the default URL it is given and names it, masked, when it falls back", async () => {
  const tried: string[] = [];
  const { base, hub } = options({
    defaultUrl: "amqp://dispatcher:stack-pw@localhost:5672",
    connect: (url) => {
      tried.push(url);
      return unreachable();
    },
  });
  const choice = await chooseBroker(base);
  assert.deepEqual(tried, ["amqp://dispatcher:stack-pw@localhost:5672"]);
  assert.match(choice.notice!, /^No broker answered at amqp:\/\/dispatcher:\*\*\*@localhost:5672,/);
  assert.ok(!choice.notice!.includes("stack-pw"));
  await hub.shutdown();
});
