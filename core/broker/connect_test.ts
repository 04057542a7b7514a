import assert from "node:assert/strict";
import { ConfigError } from "../config_error.ts";
import { type Broker, BrokerUnavailableError, type ConnectorOptions } from "./broker.ts";
import { checkBrokerUrl, connect } from "./connect.ts";
import { MemoryBroker } from "./memory/memory_broker.ts";
import { ReconnectingBroker } from "./reconnecting.ts";

const unreachable = () =>
  Promise.reject(new BrokerUnavailableError("nothing listening", { unreachable: true }));

Deno.test("connect() reaches a broker of this process by its memory:// URL, as the URL's user", async () => {
  const hub = new MemoryBroker();
  const url = hub.serve("connect-test");
  try {
    assert.equal(url, "memory://connect-test");
    const worker = await connect({ url: "memory://task_a@connect-test" });
    const caller = await connect({ url });
    assert.equal(worker.user, "task_a");
    assert.equal(caller.user, "guest");
    await worker.declareQueue("q");
    await caller.publish("q", { body: new TextEncoder().encode("hi"), properties: {} });
    assert.equal((await worker.inspectQueue("q"))?.messages, 1, "one broker behind both");
  } finally {
    await hub.shutdown();
  }
  await assert.rejects(
    connect({ url }),
    (error: Error) =>
      error instanceof BrokerUnavailableError && error.unreachable &&
      /no broker of this process is served there/.test(error.message),
    "a broker shut down is no longer served",
  );
});

Deno.test("connect() refuses a URL no backend takes, naming the schemes", async () => {
  await assert.rejects(
    connect({ url: "http://h:1" }),
    new ConfigError(
      "Cannot use the broker URL as 'http://h:1' uses 'http:': use amqp://, amqps:// or memory://",
    ),
  );
  assert.throws(
    () => checkBrokerUrl("amqp://", "--broker"),
    /Cannot use --broker as .* names no host/,
  );
  assert.equal(checkBrokerUrl("amqps://u@h:5671", "AMQP_URL").protocol, "amqps:");
});

Deno.test("connect() hands the target's TLS files and setting names to the connector", async () => {
  const hub = new MemoryBroker();
  let seen: ConnectorOptions | undefined;
  const tls = { ca: { pem: "CA", setting: "--ca-file", path: "/ca.pem" } };
  const names = { caFile: "--ca-file", certFile: "--cert-file", keyFile: "--key-file" };
  const broker = await connect({ url: "amqps://u@h:5671", tls, names }, {
    connectionName: "test",
    heartbeatSeconds: 2,
    connector: (_url, options) => {
      seen = options;
      return Promise.resolve(hub.connect());
    },
  });
  assert.deepEqual(seen, {
    timeoutMs: undefined,
    connectionName: "test",
    heartbeatSeconds: 2,
    tls,
    settingNames: names,
  });
  await broker.close();
  await hub.shutdown();
});

Deno.test("connect() tries once by default, and retries while nothing answers within waitMs", async () => {
  let attempts = 0;
  await assert.rejects(
    connect({ url: "amqp://h" }, { connector: () => (attempts++, unreachable()) }),
    BrokerUnavailableError,
  );
  assert.equal(attempts, 1, "a worker's own loop retries, with its backoff");

  const hub = new MemoryBroker();
  attempts = 0;
  const broker = await connect({ url: "amqp://starting" }, {
    waitMs: 5000,
    connector: () => ++attempts < 3 ? unreachable() : Promise.resolve(hub.connect()),
  });
  assert.equal(attempts, 3);
  await broker.close();

  attempts = 0;
  await assert.rejects(
    connect({ url: "amqp://h" }, {
      waitMs: 5000,
      connector:
        () => (attempts++, Promise.reject(new BrokerUnavailableError("refused the password"))),
    }),
    /refused the password/,
  );
  assert.equal(attempts, 1, "a refusal ends at once");
  await hub.shutdown();
});

Deno.test("connect() with reconnect gives a broker that connects again after a loss", async () => {
  const hub = new MemoryBroker();
  const opened: Broker[] = [];
  const broker = await connect({ url: "amqp://a,amqp://b" }, {
    reconnect: true,
    connector: () => {
      const connection = hub.connect("dispatcher");
      opened.push(connection);
      return Promise.resolve(connection);
    },
  });
  try {
    assert.ok(broker instanceof ReconnectingBroker);
    await broker.declareQueue("q");
    hub.disconnectAll();
    // Waits for the next connection, which its connector opens.
    assert.equal((await broker.inspectQueue("q"))?.name, "q");
    assert.ok(opened.length >= 2, `opened ${opened.length} connections`);
  } finally {
    await broker.close();
    await hub.shutdown();
  }
});
