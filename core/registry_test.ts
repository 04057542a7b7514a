import assert from "node:assert/strict";
import { ConfigError } from "./config_error.ts";
import {
  FUNCTION_FIELDS,
  functionKeys,
  loadRegistry,
  parseRegistry,
  readFunctionsSection,
  routeOf,
  routesFrom,
} from "./registry.ts";
import { YamlChecker } from "./yaml_checker.ts";

const FILE = "registry.yaml";

function problemsOf(text: string): string[] {
  try {
    parseRegistry(text, FILE);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `a ConfigError, not ${error}`);
    assert.equal(error.file, FILE);
    return error.message.split("\n").slice(1);
  }
  assert.fail(`expected problems in:\n${text}`);
}

Deno.test("parseRegistry() reads each function with its defaults, in the file's order", () => {
  const registry = parseRegistry(
    `functions:
  task_a:
    queue: queue_a
    service: worker-a
  resize_image: { queue: images, user: resizer }
  task_c:
    queue: queue_c
    protocol: celery
    celery_name: tasks.task_c
    profile: celery
`,
    FILE,
  );
  assert.deepEqual([...registry.functions.values()], [
    {
      name: "task_a",
      queue: "queue_a",
      user: "task_a",
      protocol: "native",
      service: "worker-a",
    },
    {
      name: "resize_image",
      queue: "images",
      user: "resizer",
      protocol: "native",
      service: "worker-resize-image",
    },
    {
      name: "task_c",
      queue: "queue_c",
      user: "task_c",
      protocol: "celery",
      celeryName: "tasks.task_c",
      service: "worker-task-c",
      profile: "celery",
    },
  ]);
  assert.deepEqual(registry.declared.get("resize_image"), `${FILE}:5:3`);
  assert.deepEqual(routeOf(registry.functions.get("task_a")!), {
    queue: "queue_a",
    user: "task_a",
  });
  assert.deepEqual(routeOf(registry.functions.get("task_c")!), {
    queue: "queue_c",
    user: "task_c",
    protocol: "celery",
    celeryName: "tasks.task_c",
  });
});

Deno.test("parseRegistry() reports every problem at once, each at its line and column with the fix", () => {
  const problems = problemsOf(`functions:
  TaskA: { queue: queue_a }
  task_b: { queue: Queue-B, user: dispatcher }
  task_c: { queue: queue_c, protocol: celery }
  task_d: { queue: queue_d, queu: typo }
  task_e: {}
  task_f: { queue: queue_d }
  dispatcher: { queue: queue_x }
  task_test: { queue: queue_t }
  task_g: { queue: queue_g, service: rabbitmq }
other: 1
`);
  assert.deepEqual(problems, [
    `${FILE}:2:3: functions.TaskA: function name 'TaskA' is not lower_snake_case: use letters, digits and _, starting with a letter`,
    `${FILE}:3:20: functions.task_b.queue: queue 'Queue-B' is not lower_snake_case: use letters, digits and _, starting with a letter`,
    `${FILE}:3:35: functions.task_b.user: user 'dispatcher' is one of the stack's own users (admin, dispatcher, operator, dashboard, celery_client, guest, keda, scheduler, gateway): give the function's workers a user of their own`,
    `${FILE}:4:11: functions.task_c.celery_name: is missing, and protocol celery needs it: give the Celery task name its workers register, such as tasks.task_c`,
    `${FILE}:5:29: functions.task_d.queu: is not a setting here: use queue, user, protocol, celery_name, service, profile, triggers, emits, schedule, concurrency`,
    `${FILE}:6:11: functions.task_e: has no 'queue': name the queue task_e consumes, such as queue_a`,
    `${FILE}:7:20: functions.task_f.queue: 'queue_d' is already the queue of task_d: each function needs its own queue`,
    `${FILE}:8:15: functions.dispatcher: function name 'dispatcher' would make its workers' user the stack's own 'dispatcher': choose another name, or set 'user'`,
    `${FILE}:9:14: functions.task_test: function name 'task_test' ends in _test, so functions/task_test.ts would be taken for a test: choose another name`,
    `${FILE}:10:38: functions.task_g.service: service 'rabbitmq' is one of the stack's own services: use another`,
    `${FILE}:11:1: other: is not a setting here: use functions, events`,
  ]);
});

Deno.test("parseRegistry() reads a schedule, short or in full, and points at what is wrong in it", () => {
  const registry = parseRegistry(
    `functions:
  report: { queue: reports, schedule: "0 0 3 * * *" }
  digest:
    queue: digests
    schedule:
      cron: "*/30 * * * *"
      time_zone: Europe/Berlin
      payload: { kind: digest }
      catch_up: 0
`,
    FILE,
  );
  assert.deepEqual(registry.functions.get("report")?.schedule, {
    cron: "0 0 3 * * *",
    timeZone: "UTC",
    payload: {},
    catchUpMs: 60_000,
  });
  assert.deepEqual(registry.functions.get("digest")?.schedule, {
    cron: "*/30 * * * *",
    timeZone: "Europe/Berlin",
    payload: { kind: "digest" },
    catchUpMs: 0,
  });
  assert.deepEqual(
    problemsOf(`functions:
  report:
    queue: reports
    schedule:
      cron: "0 0 3 * *"
      time_zone: Moon/Crater
  digest:
    queue: digests
    schedule:
      cron: "0 61 * * *"
  legacy: { queue: legacy, protocol: celery, celery_name: tasks.legacy, schedule: "@daily" }
`),
    [
      `${FILE}:6:18: functions.report.schedule.time_zone: 'Moon/Crater' is not a time zone this system knows: give an IANA time zone name, such as Europe/Berlin or UTC`,
      `${FILE}:10:13: functions.digest.schedule.cron: '0 61 * * *' is not a cron pattern (Invalid value for hour: 61): use 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first, such as "0 */5 * * * *"`,
      `${FILE}:11:83: functions.legacy.schedule: is only for a Deno function: its ticks are native requests, which Celery workers do not read; schedule the task in Celery beat, or remove schedule`,
    ],
  );
  // Schedules are the registry's: a configuration file's functions run on none.
  const { root, check } = YamlChecker.parse(
    `functions:\n  report: { queue: reports, schedule: "@daily" }\n`,
    "conf.yml",
  );
  readFunctionsSection(check, (root as { functions: unknown }).functions, ["functions"], {
    deployed: false,
  });
  assert.match(check.problems[0].message, /^is not a setting here/);
});

Deno.test("parseRegistry() reads a function's concurrency, a whole number from 1 to 1024", () => {
  const registry = parseRegistry(
    `functions:
  task_a: { queue: queue_a, concurrency: 1 }
  task_b: { queue: queue_b }
`,
    FILE,
  );
  assert.equal(registry.functions.get("task_a")?.concurrency, 1);
  assert.equal(registry.functions.get("task_b")?.concurrency, undefined, "the worker's default");
  assert.deepEqual(
    problemsOf(`functions:
  task_a: { queue: queue_a, concurrency: 0 }
  task_b: { queue: queue_b, concurrency: "64" }
`),
    [
      `${FILE}:2:42: functions.task_a.concurrency: concurrency 0 is not a whole number from 1 to 1024: give the tasks its workers run at once (1 for CPU-bound work), or leave it out for the default, 64`,
      `${FILE}:3:42: functions.task_b.concurrency: concurrency '64' is not a whole number from 1 to 1024: give the tasks its workers run at once (1 for CPU-bound work), or leave it out for the default, 64`,
    ],
  );
});

Deno.test("parseRegistry() refuses two functions with one broker user or one service", () => {
  assert.deepEqual(
    problemsOf(`functions:
  task_a: { queue: queue_a, user: shared, service: worker-x }
  task_b: { queue: queue_b, user: shared, service: worker-x }
`),
    [
      `${FILE}:3:35: functions.task_b.user: 'shared' is already the broker user of task_a: each function needs its own broker user`,
      `${FILE}:3:52: functions.task_b.service: 'worker-x' is already the service of task_a: each function needs its own service`,
    ],
  );
});

Deno.test("a configuration's functions: may not name deployments, and take any broker user", () => {
  const text = `functions:
  task_x: { queue: queue_x, user: "workers@x", service: worker-x }
`;
  const { root, check } = YamlChecker.parse(text, "conf.yml");
  const functions = readFunctionsSection(check, (root as { functions: unknown }).functions, [
    "functions",
  ], { deployed: false });
  assert.deepEqual(check.problems.map((p) => `${p.line}:${p.column}: ${p.path}: ${p.message}`), [
    "2:48: functions.task_x.service: is not a setting here: use queue, user, protocol, celery_name",
  ]);
  assert.equal(functions.get("task_x")?.user, "workers@x");
  assert.deepEqual(functionKeys({ deployed: true }), Object.keys(FUNCTION_FIELDS));
});

Deno.test("loadRegistry() names a file it cannot read and the fix", async () => {
  await assert.rejects(
    loadRegistry("/nonexistent/registry.yaml"),
    (error: Error) =>
      error instanceof ConfigError &&
      error.message ===
        "Cannot read the function registry /nonexistent/registry.yaml as it does not exist: give the path of your function registry (functions/registry.yaml in this project)",
  );
  const registry = await loadRegistry(
    decodeURIComponent(new URL("../functions/registry.yaml", import.meta.url).pathname),
  );
  assert.ok(registry.functions.has("task_a"));
});

Deno.test("routesFrom() reads queues, users and Celery functions by the same rules", () => {
  const routes = routesFrom({
    task_a: "queue_a",
    task_b: { queue: "queue_b", user: "b@x" },
    task_c: { queue: "queue_c", protocol: "celery", celeryName: "tasks.task_c" },
  });
  assert.deepEqual([...routes], [
    ["task_a", { queue: "queue_a", user: "task_a" }],
    ["task_b", { queue: "queue_b", user: "b@x" }],
    ["task_c", {
      queue: "queue_c",
      user: "task_c",
      protocol: "celery",
      celeryName: "tasks.task_c",
    }],
  ]);
});

Deno.test("routesFrom() names every setting to fix, as the option spells it", () => {
  const refused = (option: Record<string, unknown>) => {
    try {
      routesFrom(option as Parameters<typeof routesFrom>[0]);
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      return error.message;
    }
    assert.fail(JSON.stringify(option));
  };
  assert.equal(
    refused({
      task_c: { queue: "queue_c", protocol: "celery" },
      task_d: { queue: "queue_c", celeryName: "tasks.task_d" },
      task_e: { queue: "queue_e", protocol: "http" },
      task_f: { queue: "queue_f", protocol: "celery", celeryName: "tasks/f" },
      task_g: "Queue G",
      task_a: "queue_a",
      task_h: "queue_a",
    }),
    [
      "Cannot use the 'functions' option as it has 6 problems:",
      "functions.task_c.celeryName: is missing, and protocol celery needs it: give the Celery task name its workers register, such as tasks.task_c",
      "functions.task_d.celeryName: is only for a function served by Celery workers: set protocol to celery, or remove celeryName",
      'functions.task_e.protocol: must be native or celery, but is "http": use celery for a function served by Celery workers, or leave it out',
      'functions.task_f.celeryName: must be a Celery task name (dotted Python names, such as tasks.task_c), but is "tasks/f"',
      "functions.task_g.queue: queue 'Queue G' is not lower_snake_case: use letters, digits and _, starting with a letter",
      "functions.task_h.queue: 'queue_a' is already the queue of task_a: each function needs its own queue",
    ].join("\n"),
  );
});

Deno.test("parseRegistry() reads triggers, emits and events.emitters, and refuses bad ones", () => {
  const registry = parseRegistry(
    [
      "functions:",
      "  task_a:",
      "    queue: queue_a",
      '    triggers: [order.created, "order.*"]',
      "    emits: order.priced",
      "events:",
      "  emitters:",
      '    dispatcher: ["order.#"]',
    ].join("\n"),
    "registry.yaml",
  );
  const entry = registry.functions.get("task_a")!;
  assert.deepEqual(entry.triggers, ["order.created", "order.*"]);
  assert.equal(entry.emits, "order.priced");
  assert.deepEqual([...registry.emitters], [["dispatcher", ["order.#"]]]);
  assert.throws(
    () =>
      parseRegistry(
        [
          "functions:",
          "  task_a:",
          "    queue: queue_a",
          "    triggers: [order created]",
          '    emits: "order.*"',
          "  task_b:",
          "    queue: queue_b",
          "events:",
          "  emitters:",
          "    task_b: [x]",
        ].join("\n"),
        "registry.yaml",
      ),
    (error: Error) =>
      /triggers: "order created" is not a topic pattern/.test(error.message) &&
      /emits 'order\.\*' is not an event type/.test(error.message) &&
      /'task_b' is a function's broker user/.test(error.message),
  );
});
