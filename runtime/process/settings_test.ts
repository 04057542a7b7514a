import assert from "node:assert/strict";
import { resolveBrokerTarget } from "../../core/broker/mod.ts";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../../core/contract/mod.ts";
import {
  DEFAULT_CONCURRENCY,
  DEFAULT_METRICS_PORT,
  WORKER_ENV_VARS,
  type WorkerEnvVar,
} from "../defaults.ts";
import { checkDeployment, DeploymentError, readWorkerSettings } from "./settings.ts";

function envOf(vars: Partial<Record<WorkerEnvVar, string>>) {
  return (name: WorkerEnvVar) => vars[name];
}

function assertRefused(vars: Partial<Record<WorkerEnvVar, string>>, pattern: RegExp): void {
  assert.throws(() => readWorkerSettings(envOf(vars)), (error: unknown) => {
    assert.ok(error instanceof RangeError, `expected a RangeError, got ${error}`);
    assert.match(error.message, /^Cannot start the worker as /);
    assert.match(error.message, pattern);
    return true;
  }, JSON.stringify(vars));
}

Deno.test("readWorkerSettings() gives the defaults when nothing is set", () => {
  assert.deepEqual(readWorkerSettings(envOf({})), {
    queue: undefined,
    concurrency: 64,
    prefetch: 64,
    queueType: "quorum",
    deliveryLimit: 5,
    allowedSenders: undefined,
    maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
    graceMs: 10_000,
    workerId: undefined,
    logLevel: "info",
    logFormat: "json",
    metricsPort: DEFAULT_METRICS_PORT,
    events: false,
    maxEtaMs: 7 * 24 * 3_600_000,
    deployment: { name: undefined, queue: undefined },
  });
});

Deno.test("readWorkerSettings() treats empty variables as unset", () => {
  const empty = Object.fromEntries(WORKER_ENV_VARS.map((name) => [name, ""]));
  assert.deepEqual(readWorkerSettings(envOf(empty)), readWorkerSettings(envOf({})));
});

Deno.test("readWorkerSettings() reads every variable it knows", () => {
  assert.deepEqual(
    readWorkerSettings(envOf({
      QUEUE: "queue_x",
      CONCURRENCY: "4",
      PREFETCH: "8",
      QUEUE_TYPE: "classic",
      DELIVERY_LIMIT: "9",
      ALLOWED_SENDERS: "dispatcher, task_a",
      MAX_MESSAGE_BYTES: "2048",
      SHUTDOWN_GRACE_MS: "0",
      WORKER_ID: "w-1",
      LOG_LEVEL: "debug",
      LOG_FORMAT: "text",
      METRICS_PORT: "9100",
      TASK_EVENTS: "true",
      MAX_ETA_MS: "60000",
      FUNCTION_NAME: "task_x",
      FUNCTION_QUEUE: "queue_x",
      FUNCTION_TRIGGERS: "order.created, order.*",
      FUNCTION_EMITS: "order.priced",
    })),
    {
      queue: "queue_x",
      concurrency: 4,
      prefetch: 8,
      queueType: "classic",
      deliveryLimit: 9,
      allowedSenders: ["dispatcher", "task_a"],
      maxMessageBytes: 2048,
      graceMs: 0,
      workerId: "w-1",
      logLevel: "debug",
      logFormat: "text",
      metricsPort: 9100,
      events: true,
      maxEtaMs: 60_000,
      deployment: { name: "task_x", queue: "queue_x" },
      subscriptions: { triggers: ["order.created", "order.*"], emits: "order.priced" },
    },
  );
});

Deno.test("readWorkerSettings() refuses a trigger that is no topic pattern, an emits that is no type", () => {
  assertRefused({ FUNCTION_TRIGGERS: "order created" }, /FUNCTION_TRIGGERS has "order created"/);
  assertRefused({ FUNCTION_EMITS: "order.*" }, /FUNCTION_EMITS is 'order\.\*'/);
});

Deno.test("a worker's settings and its broker's read exactly the variables of WORKER_ENV_VARS", async () => {
  const asked = new Set<string>();
  const env = (name: string) => {
    asked.add(name);
    return undefined;
  };
  readWorkerSettings(env);
  // As the worker's main resolves its broker: variables only, no stack password.
  await resolveBrokerTarget({ env });
  assert.deepEqual([...asked].sort(), [...WORKER_ENV_VARS].sort());
});

Deno.test("readWorkerSettings() sets PREFETCH to CONCURRENCY by default", () => {
  const settings = readWorkerSettings(envOf({ CONCURRENCY: "6" }));
  assert.equal(settings.concurrency, 6);
  assert.equal(settings.prefetch, 6);
  // CONCURRENCY=1 keeps one task at a time, as the default was before 64.
  const single = readWorkerSettings(envOf({ CONCURRENCY: "1" }));
  assert.equal(single.prefetch, 1);
});

Deno.test("readWorkerSettings() takes DEFAULT_CONCURRENCY, 64, tasks at once unless told", () => {
  assert.equal(DEFAULT_CONCURRENCY, 64);
  const settings = readWorkerSettings(envOf({ PREFETCH: "128" }));
  assert.equal(settings.concurrency, DEFAULT_CONCURRENCY);
  assert.equal(settings.prefetch, 128);
});

Deno.test("readWorkerSettings() refuses a PREFETCH below CONCURRENCY", () => {
  assertRefused(
    { CONCURRENCY: "4", PREFETCH: "2" },
    /PREFETCH \(2\) is below CONCURRENCY \(4\): raise PREFETCH or leave it unset/,
  );
  assert.equal(readWorkerSettings(envOf({ CONCURRENCY: "4", PREFETCH: "4" })).prefetch, 4);
});

Deno.test("readWorkerSettings() refuses a bad whole number, naming the variable and value", () => {
  const cases: [WorkerEnvVar, string, string][] = [
    ["CONCURRENCY", "0", "from 1 to 1024"],
    ["CONCURRENCY", "-2", "from 1 to 1024"],
    ["CONCURRENCY", "two", "from 1 to 1024"],
    ["CONCURRENCY", "1.5", "from 1 to 1024"],
    ["CONCURRENCY", "5000", "from 1 to 1024"],
    ["PREFETCH", "0", "from 1 to 65535"],
    ["PREFETCH", "many", "from 1 to 65535"],
    ["MAX_MESSAGE_BYTES", "0", "from 1024 to 67108864"],
    ["MAX_MESSAGE_BYTES", "1MB", "from 1024 to 67108864"],
    ["MAX_MESSAGE_BYTES", "999999999999", "from 1024 to 67108864"],
    ["DELIVERY_LIMIT", "0", "from 1 to 1000"],
    ["SHUTDOWN_GRACE_MS", "-1", "from 0 to 3600000"],
    ["SHUTDOWN_GRACE_MS", "10s", "from 0 to 3600000"],
  ];
  for (const [name, value, range] of cases) {
    assertRefused(
      { [name]: value },
      new RegExp(`${name} is '${value}': set it to a whole number ${range}$`),
    );
  }
});

Deno.test("readWorkerSettings() refuses a value outside its choices, listing them", () => {
  assertRefused(
    { QUEUE_TYPE: "stream" },
    /QUEUE_TYPE is 'stream': set it to one of classic, quorum$/,
  );
  assertRefused(
    { LOG_LEVEL: "verbose" },
    /LOG_LEVEL is 'verbose': set it to one of debug, info, warn, error$/,
  );
  assertRefused({ LOG_LEVEL: "INFO" }, /LOG_LEVEL is 'INFO'/);
  assertRefused({ LOG_FORMAT: "xml" }, /LOG_FORMAT is 'xml': set it to one of json, text$/);
  assertRefused(
    { MAX_ETA_MS: "31536000001" },
    /MAX_ETA_MS is .31536000001.: set it to a whole number/,
  );
});

Deno.test("readWorkerSettings() refuses a sender list or worker id that is not names", () => {
  assertRefused({ ALLOWED_SENDERS: "dispatcher,has space" }, /ALLOWED_SENDERS names 'has space'/);
  assertRefused({ WORKER_ID: "x".repeat(200) }, /WORKER_ID is 'x+': use at most 128/);
  assert.deepEqual(readWorkerSettings(envOf({ ALLOWED_SENDERS: "*" })).allowedSenders, ["*"]);
});

Deno.test("readWorkerSettings() refuses numbers written other than as plain digits", () => {
  for (const text of [" ", "0x10", "1e3", "+5", "2.0"]) {
    assertRefused(
      { SHUTDOWN_GRACE_MS: text },
      /SHUTDOWN_GRACE_MS is '.*': set it to a whole number/,
    );
  }
});

Deno.test("readWorkerSettings() reads METRICS_PORT, 0 meaning off, and refuses bad ports", () => {
  const read = (env: Record<string, string>) => readWorkerSettings((name) => env[name]);
  assert.equal(read({}).metricsPort, DEFAULT_METRICS_PORT);
  assert.equal(read({ METRICS_PORT: "0" }).metricsPort, 0);
  assert.equal(read({ METRICS_PORT: "9100" }).metricsPort, 9100);
  for (const bad of ["-1", "65536", "http", "80.5"]) {
    assert.throws(
      () => read({ METRICS_PORT: bad }),
      (error: Error) =>
        error instanceof RangeError &&
        error.message ===
          `Cannot start the worker as METRICS_PORT is '${bad}': set it to a whole number from 0 to 65535`,
    );
  }
});

Deno.test("readWorkerSettings() refuses a FUNCTION_NAME or FUNCTION_QUEUE that is not a name", () => {
  assertRefused(
    { FUNCTION_NAME: "Task A" },
    /FUNCTION_NAME is 'Task A': set it to a lower_snake_case/,
  );
  assertRefused({ FUNCTION_QUEUE: "queue.*" }, /FUNCTION_QUEUE is 'queue\.\*'/);
});

Deno.test("checkDeployment() stops a module that is not the function its deployment runs", () => {
  const info = { name: "task_a", queue: "queue_a" };
  checkDeployment(info, {});
  checkDeployment(info, { name: "task_a", queue: "queue_a" });
  checkDeployment(info, { name: "task_a" });
  assert.throws(
    () => checkDeployment(info, { name: "task_b", queue: "queue_b" }),
    (error: unknown) => {
      assert.ok(error instanceof DeploymentError);
      assert.equal(
        error.message,
        "Cannot serve this deployment as its function module defines name 'task_a', not 'task_b' (FUNCTION_NAME) and queue 'queue_a', not 'queue_b' (FUNCTION_QUEUE): make the module and its entry in functions/registry.yaml agree, then run 'deno task manifests' and rebuild the image",
      );
      return true;
    },
  );
  assert.throws(
    () => checkDeployment(info, { queue: "queue_b" }),
    /queue 'queue_a', not 'queue_b'/,
  );
});
