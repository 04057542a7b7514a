import assert from "node:assert/strict";
import {
  type BrokerTarget,
  BrokerUnavailableError,
  MemoryBroker,
  ReconnectingBroker,
} from "../core/broker/mod.ts";
import { ConfigError } from "../core/config_error.ts";
import type { Embedded } from "../runtime/embedded.ts";
import {
  connectBroker,
  describeBroker,
  openBroker,
  type OpenBrokerOptions,
} from "./open_broker.ts";

function options(overrides: Partial<OpenBrokerOptions> = {}) {
  const calls = { connect: [] as string[], embedded: 0 };
  const hub = new MemoryBroker();
  const base: OpenBrokerOptions = {
    functions: [{ task: "task_a", queue: "queue_a" }],
    connect: (url) => {
      calls.connect.push(url);
      return Promise.resolve(hub.connect());
    },
    startEmbedded: () => {
      calls.embedded++;
      const embedded: Embedded = { connect: () => hub.connect(), stop: () => hub.shutdown() };
      return Promise.resolve(embedded);
    },
    ...overrides,
  };
  return { base, calls, hub };
}

function target(url: string, explicit: boolean, extra: Partial<BrokerTarget> = {}): BrokerTarget {
  return {
    url,
    label: url.replace(/:[^:@/]+@/, ":***@"),
    user: "u",
    explicit,
    files: [],
    names: { caFile: "--ca-file", certFile: "--cert-file", keyFile: "--key-file" },
    ...extra,
  };
}

const unreachable = () =>
  Promise.reject(new BrokerUnavailableError("nothing listening", { unreachable: true }));

Deno.test("openBroker() runs the embedded broker with local, and connects nowhere", async () => {
  const { base, calls, hub } = options({ local: true });
  const opened = await openBroker(base);
  assert.ok(opened.embedded);
  assert.equal(opened.notice, undefined);
  assert.equal(opened.target, undefined);
  assert.match(opened.label, /^embedded/);
  assert.deepEqual(calls.connect, []);
  await opened.close();
  await hub.shutdown();
});

Deno.test("openBroker() turns a function without a module into a ConfigError", async () => {
  const { base } = options({
    local: true,
    startEmbedded: () => Promise.reject(new TypeError("functions/task_z.ts does not exist")),
  });
  await assert.rejects(openBroker(base), ConfigError);
});

Deno.test("connectBroker() fails for an explicit broker that does not answer, without fallback", async () => {
  const { base, calls, hub } = options({ connect: unreachable, fallback: true, timeoutMs: 300 });
  await assert.rejects(
    connectBroker(target("amqp://u:p@broker:5672", true), base),
    BrokerUnavailableError,
  );
  assert.equal(calls.embedded, 0);
  await hub.shutdown();
});

Deno.test("connectBroker() connects to an explicit broker and masks its password", async () => {
  const { base, calls, hub } = options();
  const opened = await connectBroker(
    target("amqp://u:secret@broker:5672", true, { passwordFile: "/pw" }),
    base,
  );
  assert.deepEqual(calls.connect, ["amqp://u:secret@broker:5672"]);
  assert.equal(opened.label, "amqp://u:***@broker:5672");
  assert.equal(describeBroker(opened), "amqp://u:***@broker:5672 (password from /pw)");
  assert.equal(opened.embedded, undefined);
  await hub.shutdown();
});

Deno.test("connectBroker() with fallback tries localhost, then runs embedded with a notice", async () => {
  const tried: string[] = [];
  const { base, calls } = options({
    fallback: true,
    probeTimeoutMs: 300,
    connect: (url) => {
      tried.push(url);
      return unreachable();
    },
  });
  const opened = await connectBroker(
    target("amqp://dispatcher:stack-pw@localhost:5672", false),
    base,
  );
  assert.ok(tried.length >= 1);
  assert.ok(tried.every((url) => url === "amqp://dispatcher:stack-pw@localhost:5672"), "probes it");
  assert.equal(calls.embedded, 1);
  assert.match(opened.notice!, /^No broker answered at amqp:\/\/dispatcher:\*\*\*@localhost:5672,/);
  assert.match(opened.notice!, /docker compose up -d --build/);
  assert.ok(!opened.notice!.includes("stack-pw"));
  await opened.close();
});

Deno.test("connectBroker() without fallback fails when localhost does not answer", async () => {
  const { base, calls, hub } = options({ connect: unreachable, timeoutMs: 300 });
  await assert.rejects(
    connectBroker(target("amqp://guest:guest@localhost:5672", false), base),
    BrokerUnavailableError,
  );
  assert.equal(calls.embedded, 0);
  await hub.shutdown();
});

Deno.test("connectBroker() does not fall back when localhost answers but refuses", async () => {
  const { base, calls, hub } = options({
    fallback: true,
    connect: () => Promise.reject(new BrokerUnavailableError("refused the password")),
  });
  await assert.rejects(
    connectBroker(target("amqp://guest:guest@localhost:5672", false), base),
    /refused the password/,
  );
  assert.equal(calls.embedded, 0);
  await hub.shutdown();
});

Deno.test("connectBroker() retries while nothing answers, until it does", async () => {
  let attempts = 0;
  const hub = new MemoryBroker();
  const { base } = options({
    connect: () => ++attempts < 3 ? unreachable() : Promise.resolve(hub.connect()),
    timeoutMs: 5000,
  });
  const opened = await connectBroker(target("amqp://u:p@starting:5672", true), base);
  assert.equal(attempts, 3);
  await opened.close();
  await hub.shutdown();
});

Deno.test("openBroker() refuses the embedded broker for a function Celery workers serve, naming it", async () => {
  const functions = [
    { task: "task_a", queue: "queue_a" },
    { task: "task_c", queue: "queue_c", protocol: "celery" as const },
  ];
  const local = options({ local: true, functions });
  await assert.rejects(
    openBroker(local.base),
    (error: Error) =>
      error instanceof ConfigError &&
      /^Cannot run task_c on the embedded broker as Celery workers serve it: run without --local/
        .test(error.message),
  );
  assert.equal(local.calls.embedded, 0);
  await local.hub.shutdown();
  const fallback = options({
    fallback: true,
    probeTimeoutMs: 300,
    connect: unreachable,
    functions,
  });
  await assert.rejects(
    connectBroker(target("amqp://guest:guest@localhost:5672", false), fallback.base),
    (error: Error) =>
      error instanceof BrokerUnavailableError &&
      /^Cannot run task_c as no broker answered at amqp:\/\/guest:\*\*\*@localhost:5672, and Celery workers need one/
        .test(error.message),
  );
  assert.equal(fallback.calls.embedded, 0);
  await fallback.hub.shutdown();
});

Deno.test("connectBroker() picks a reply queue and reconnection for several URLs, Direct Reply-to for one", async () => {
  const cases: [string, OpenBrokerOptions["replies"], "direct" | "queue", boolean][] = [
    ["amqp://u@a:5672,amqp://u@b:5672", undefined, "queue", true],
    ["amqp://u@a:5672", undefined, "direct", false],
    ["amqp://u@a:5672", "queue", "queue", true],
    ["amqp://u@a:5672,amqp://u@b:5672", "direct", "direct", false],
  ];
  for (const [url, replies, expected, reconnects] of cases) {
    const { base, hub } = options({ replies, reconnect: "auto" });
    const opened = await connectBroker(target(url, true), base);
    assert.equal(opened.replies, expected, `${url} with ${replies}`);
    assert.equal(opened.broker instanceof ReconnectingBroker, reconnects, `${url} with ${replies}`);
    await opened.close();
    await hub.shutdown();
  }
});
