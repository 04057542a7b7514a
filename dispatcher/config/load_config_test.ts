import assert from "node:assert/strict";
import { ConfigError, type ConfigProblem } from "../../core/config_error.ts";
import { parseRegistry } from "../../core/registry.ts";
import { type Config, DEFAULT_TIMEOUT_MS, loadConfig, parseConfig } from "./load_config.ts";

const FILE = "conf.yml";

const FUNCTIONS = `functions:
  task_a:
    queue: queue_a
  task_b:
    queue: queue_b
`;

/** The ConfigError `text` must raise. */
function configError(text: string): ConfigError {
  try {
    parseConfig(text, FILE);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    assert.equal(error.file, FILE);
    assert.equal(error.name, "ConfigError");
    return error;
  }
  assert.fail(`expected a ConfigError for:\n${text}`);
}

/** Checks that `error` has exactly `expected` and that its message places each. */
function assertProblems(error: ConfigError, expected: Omit<ConfigProblem, "message">[]): void {
  assert.deepEqual(
    error.problems.map(({ line, column, path }) => ({ line, column, path })),
    expected,
    error.message,
  );
  const count = expected.length;
  assert.ok(
    error.message.startsWith(
      `Cannot use ${FILE} as it has ${count} problem${count === 1 ? "" : "s"}:\n`,
    ),
    error.message,
  );
  for (const problem of error.problems) {
    const where = `${FILE}:${problem.line}:${problem.column}: `;
    const line = `${where}${problem.path ? `${problem.path}: ` : ""}${problem.message}`;
    assert.ok(error.message.split("\n").includes(line), `${line}\nnot in\n${error.message}`);
  }
}

function onlyProblem(text: string, where: Omit<ConfigProblem, "message">): string {
  const error = configError(text);
  assertProblems(error, [where]);
  return error.problems[0].message;
}

function scenario(config: Config, name: string) {
  const found = config.scenarios.get(name);
  assert.ok(found, `scenario ${name} in ${[...config.scenarios.keys()]}`);
  return found;
}

// --- the repository's file ---------------------------------------------------

Deno.test("loadConfig() loads the repository's test-config.yml, its functions from the registry beside it", async () => {
  const file = decodeURIComponent(new URL("../../test-config.yml", import.meta.url).pathname);
  const config = await loadConfig(file);
  assert.equal(config.file, file);
  assert.equal(config.registry, file.replace(/test-config\.yml$/, "functions/registry.yaml"));
  assert.equal(config.name, "Distributed task system demo");
  assert.equal(config.defaultScenario, "basic");
  assert.deepEqual(
    config.functions,
    new Map([
      ["task_a", { queue: "queue_a", user: "task_a" }],
      ["task_b", { queue: "queue_b", user: "task_b" }],
    ]),
  );
  assert.deepEqual([...config.scenarios.keys()], [
    "basic",
    "burst",
    "recovers_after_retries",
    "exhausts_retries",
    "greet_by_event",
  ]);
  const retry = { max_retries: 3, base_delay_ms: 200, factor: 2, max_delay_ms: 5000 };
  const basic = scenario(config, "basic");
  assert.match(basic.description, /task_a and task_b dispatched together/);
  assert.deepEqual(basic.tasks, [
    {
      label: "task_a",
      task: "task_a",
      queue: "queue_a",
      payload: { work_ms: 100 },
      timeoutMs: 10000,
      retry,
      expect: { status: "success", result: "Hello from Task A" },
    },
    {
      label: "task_b",
      task: "task_b",
      queue: "queue_b",
      payload: { work_ms: 200 },
      timeoutMs: 10000,
      retry,
      expect: { status: "success", result: "Hello from Task B" },
    },
  ]);
  const burst = scenario(config, "burst").tasks;
  assert.equal(burst.length, 40);
  assert.deepEqual(burst.map((t) => t.label), [
    ...Array.from({ length: 20 }, (_, i) => `task_a#${i + 1}`),
    ...Array.from({ length: 20 }, (_, i) => `task_b#${i + 1}`),
  ]);
  const [exhausts] = scenario(config, "exhausts_retries").tasks;
  assert.deepEqual(exhausts.retry, { ...retry, max_retries: 1 });
  assert.deepEqual(exhausts.expect, { status: "error", errorType: "SimulatedFailure" });
});

Deno.test("loadConfig() reads a file and places problems at file:line:col", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const good = `${dir}/good.yml`;
    await Deno.writeTextFile(
      good,
      `${FUNCTIONS}scenarios:\n  one:\n    tasks:\n      - task: task_b\n`,
    );
    const config = await loadConfig(good);
    assert.equal(config.name, good, "the name defaults to the file");
    assert.equal(config.defaultScenario, "one");

    const bad = `${dir}/bad.yml`;
    await Deno.writeTextFile(
      bad,
      `${FUNCTIONS}scenarios:\n  one:\n    tasks:\n      - task: task_c\n`,
    );
    const error = await loadConfig(bad).then(() => undefined, (e) => e);
    assert.ok(error instanceof ConfigError);
    assert.equal(error.file, bad);
    assert.ok(
      error.message.includes(`\n${bad}:9:15: scenarios.one.tasks[0].task: `),
      error.message,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadConfig() says when the file does not exist", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const missing = `${dir}/nope.yml`;
    const error = await loadConfig(missing).then(() => undefined, (e) => e);
    assert.ok(error instanceof ConfigError);
    assert.equal(error.file, missing);
    assert.deepEqual(error.problems, []);
    assert.equal(
      error.message,
      `Cannot read ${missing} as it does not exist: pass --config with the path of your test-config.yml`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadConfig() says when the path cannot be read as a file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const error = await loadConfig(dir).then(() => undefined, (e) => e);
    assert.ok(error instanceof ConfigError);
    assert.ok(error.message.startsWith(`Cannot read ${dir} as it cannot be read: `), error.message);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// --- YAML itself ---------------------------------------------------------------

Deno.test("parseConfig() reports bad YAML syntax with its line and column", () => {
  const message = onlyProblem(`name: demo\nfunctions:\n  task_a: { queue: queue_a\n`, {
    line: 4,
    column: 1,
    path: "",
  });
  assert.match(message, /: fix the YAML syntax$/);
});

Deno.test("parseConfig() reports a key that appears twice in one mapping", () => {
  const message = onlyProblem(
    `${FUNCTIONS}scenarios:\n  one:\n    tasks:\n      - task: task_a\n        task: task_b\n`,
    { line: 10, column: 9, path: "" },
  );
  assert.equal(message, "a key appears twice in one mapping: remove or rename one");
});

Deno.test("parseConfig() refuses a document that is not a mapping", () => {
  const message = onlyProblem("- task_a\n- task_b\n", { line: 1, column: 1, path: "" });
  assert.equal(message, "must be a mapping, but is a list");
});

Deno.test("loadConfig() reads examples/celery's functions from the registry its 'registry:' names", async () => {
  const file = decodeURIComponent(
    new URL("../../examples/celery/test-config.yml", import.meta.url).pathname,
  );
  const config = await loadConfig(file);
  // task_c is of the compose profile celery: here because a scenario calls it.
  assert.deepEqual(config.functions.get("task_c"), {
    queue: "queue_c",
    user: "task_c",
    protocol: "celery",
    celeryName: "tasks.task_c",
  });
  assert.deepEqual([...config.functions.keys()], ["task_a", "task_b", "task_c"]);
});

// --- the registry and a file's own functions ---------------------------------------

const REGISTRY = `functions:
  task_a: { queue: queue_a }
  task_c: { queue: queue_c, protocol: celery, celery_name: tasks.task_c, profile: celery }
`;

function withRegistry(_text: string) {
  return { registry: parseRegistry(REGISTRY, "functions/registry.yaml") };
}

Deno.test("parseConfig() takes the registry's functions, and leaves out one of a profile no scenario calls", () => {
  const text = `scenarios:\n  one: { tasks: [{ task: task_a }] }\n`;
  const config = parseConfig(text, FILE, withRegistry(text));
  assert.deepEqual([...config.functions], [["task_a", { queue: "queue_a", user: "task_a" }]]);
  assert.equal(config.registry, "functions/registry.yaml");
  const calling = `scenarios:\n  one: { tasks: [{ task: task_c }] }\n`;
  assert.deepEqual(
    [...parseConfig(calling, FILE, withRegistry(calling)).functions.keys()],
    ["task_a", "task_c"],
  );
});

Deno.test("parseConfig() adds a file's own functions, and may repeat a registry entry as it is", () => {
  const text = `functions:
  task_a: { queue: queue_a }
  task_x: { queue: queue_x, user: workers_x }
scenarios:
  one: { tasks: [{ task: task_x }, { task: task_a }] }
`;
  const config = parseConfig(text, FILE, withRegistry(text));
  assert.deepEqual([...config.functions], [
    ["task_a", { queue: "queue_a", user: "task_a" }],
    ["task_x", { queue: "queue_x", user: "workers_x" }],
  ]);
});

Deno.test("parseConfig() refuses a function that contradicts the registry, naming both", () => {
  const text = `functions:
  task_a: { queue: queue_other }
  task_y: { queue: queue_c }
scenarios:
  one: { tasks: [{ task: task_a }] }
`;
  const error = (() => {
    try {
      parseConfig(text, FILE, withRegistry(text));
    } catch (error) {
      return error as ConfigError;
    }
    assert.fail("a ConfigError");
  })();
  assertProblems(error, [
    { line: 2, column: 3, path: "functions.task_a" },
    { line: 3, column: 20, path: "functions.task_y.queue" },
  ]);
  assert.equal(
    error.problems[0].message,
    "contradicts task_a of the registry (functions/registry.yaml:2:3: queue queue_a, user task_a) with queue queue_other, user task_a: remove it here, or make the two agree",
  );
  assert.equal(
    error.problems[1].message,
    "'queue_c' is already the queue of task_c (functions/registry.yaml:3:3): each function needs its own queue",
  );
});

Deno.test("loadConfig() finds the registry beside the file, or where its 'registry:' says", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/functions`);
    await Deno.writeTextFile(`${dir}/functions/registry.yaml`, REGISTRY);
    await Deno.writeTextFile(`${dir}/a.yml`, "scenarios:\n  s: { tasks: [{ task: task_a }] }\n");
    assert.equal((await loadConfig(`${dir}/a.yml`)).registry, `${dir}/functions/registry.yaml`);
    await Deno.mkdir(`${dir}/nested`);
    await Deno.writeTextFile(
      `${dir}/nested/b.yml`,
      "registry: ../functions/registry.yaml\nscenarios:\n  s: { tasks: [{ task: task_a }] }\n",
    );
    assert.equal(
      (await loadConfig(`${dir}/nested/b.yml`)).functions.get("task_a")?.queue,
      "queue_a",
    );
    await Deno.writeTextFile(
      `${dir}/nested/c.yml`,
      "registry: missing.yaml\nscenarios:\n  s: { tasks: [{ task: task_a }] }\n",
    );
    await assert.rejects(
      loadConfig(`${dir}/nested/c.yml`),
      (error: Error) =>
        error instanceof ConfigError &&
        error.message.startsWith(
          `Cannot read the function registry ${dir}/nested/missing.yaml as it does not exist`,
        ),
    );
    // Beside a file in another folder, no registry: its own functions only.
    await assert.rejects(loadConfig(`${dir}/nested/d.yml`), ConfigError);
    await Deno.writeTextFile(
      `${dir}/nested/d.yml`,
      "scenarios:\n  s: { tasks: [{ task: task_a }] }\n",
    );
    await assert.rejects(
      loadConfig(`${dir}/nested/d.yml`),
      (error: Error) =>
        error instanceof ConfigError && /there is no function registry/.test(error.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// --- structure -------------------------------------------------------------------

Deno.test("parseConfig() refuses an unknown top-level key at the key", () => {
  const message = onlyProblem(
    `${FUNCTIONS}timeout: 5\nscenarios:\n  one:\n    tasks:\n      - task: task_a\n`,
    { line: 6, column: 1, path: "timeout" },
  );
  assert.equal(
    message,
    "is not a setting here: use name, default_scenario, registry, functions, defaults, scenarios",
  );
});

Deno.test("parseConfig() refuses an unknown task key at the key", () => {
  const message = onlyProblem(
    `${FUNCTIONS}scenarios:\n  one:\n    tasks:\n      - task: task_a\n        retry: 3\n`,
    { line: 10, column: 9, path: "scenarios.one.tasks[0].retry" },
  );
  assert.equal(
    message,
    "is not a setting here: use task, payload, count, timeout_ms, retries, backoff, expect",
  );
});

Deno.test("parseConfig() refuses a task whose function is not under 'functions'", () => {
  const message = onlyProblem(
    `${FUNCTIONS}scenarios:\n  one:\n    tasks:\n      - task: task_a\n      - task: task_c\n`,
    { line: 10, column: 15, path: "scenarios.one.tasks[1].task" },
  );
  assert.equal(
    message,
    "'task_c' is not a function of this file or its registry: use one of task_a, task_b, or add it to functions/registry.yaml (deno task new) or under 'functions'",
  );
});

Deno.test("parseConfig() refuses a task without 'task'", () => {
  const message = onlyProblem(
    `${FUNCTIONS}scenarios:\n  one:\n    tasks:\n      - payload: { work_ms: 1 }\n`,
    { line: 9, column: 9, path: "scenarios.one.tasks[0]" },
  );
  assert.match(message, /has no 'task': name the function to run/);
});

Deno.test("parseConfig() refuses a function without a queue", () => {
  const message = onlyProblem(
    `functions:\n  task_a: {}\n  task_b: { queue: queue_b }\n` +
      `scenarios:\n  one:\n    tasks:\n      - task: task_b\n`,
    { line: 2, column: 11, path: "functions.task_a" },
  );
  assert.equal(message, "has no 'queue': name the queue task_a consumes, such as queue_a");
});

Deno.test("parseConfig() refuses two functions that share a queue", () => {
  const message = onlyProblem(
    `functions:\n  task_a:\n    queue: queue_a\n  task_b:\n    queue: queue_a\n` +
      `scenarios:\n  one:\n    tasks:\n      - task: task_a\n`,
    { line: 5, column: 12, path: "functions.task_b.queue" },
  );
  assert.equal(
    message,
    "'queue_a' is already the queue of task_a: each function needs its own queue",
  );
});

Deno.test("parseConfig() refuses names that are not lower_snake_case", () => {
  const error = configError(
    `functions:\n  TaskA:\n    queue: queue_a\n  task_b:\n    queue: Queue-B\n` +
      `scenarios:\n  One:\n    tasks:\n      - task: task_b\n`,
  );
  assertProblems(error, [
    { line: 2, column: 3, path: "functions.TaskA" },
    { line: 5, column: 12, path: "functions.task_b.queue" },
    { line: 7, column: 3, path: "scenarios.One" },
  ]);
  assert.match(error.problems[0].message, /^function name 'TaskA' is not lower_snake_case/);
  assert.match(error.problems[1].message, /^queue 'Queue-B' is not lower_snake_case/);
  assert.match(error.problems[2].message, /^scenario name 'One' is not lower_snake_case/);
});

Deno.test("parseConfig() refuses a missing 'functions' or 'scenarios'", () => {
  const error = configError("name: demo\n");
  assertProblems(error, [
    { line: 1, column: 1, path: "functions" },
    { line: 1, column: 1, path: "scenarios" },
  ]);
  assert.equal(
    error.problems[0].message,
    "is missing, and there is no function registry (functions/registry.yaml beside this file): add 'functions:', or 'registry:' with the path of yours",
  );
  assert.equal(error.problems[1].message, "must map scenario names to scenarios, but is missing");
});

Deno.test("parseConfig() refuses a scenario with no tasks", () => {
  const message = onlyProblem(`${FUNCTIONS}scenarios:\n  one:\n    tasks: []\n`, {
    line: 8,
    column: 12,
    path: "scenarios.one.tasks",
  });
  assert.equal(message, "must be a non-empty list of tasks, but is a list");
});

// --- values -----------------------------------------------------------------------

Deno.test("parseConfig() reports every wrongly typed task setting at once, at its value", () => {
  const error = configError(
    `${FUNCTIONS}scenarios:\n  one:\n    tasks:\n` +
      `      - task: task_a\n` + //            line 9
      `        timeout_ms: "500"\n` + //       line 10
      `        count: 0\n` + //                line 11
      `        retries: -1\n` + //             line 12
      `        payload: [1, 2]\n`, //          line 13
  );
  assertProblems(error, [
    { line: 10, column: 21, path: "scenarios.one.tasks[0].timeout_ms" },
    { line: 11, column: 16, path: "scenarios.one.tasks[0].count" },
    { line: 12, column: 18, path: "scenarios.one.tasks[0].retries" },
    { line: 13, column: 18, path: "scenarios.one.tasks[0].payload" },
  ]);
  assert.deepEqual(error.problems.map((p) => p.message), [
    "must be a whole number >= 1, but is '500'",
    "must be a whole number >= 1, but is 0",
    "must be a whole number from 0 to 25, but is -1",
    "must be a mapping (a JSON object), but is a list",
  ]);
});

Deno.test("parseConfig() refuses wrong defaults and backoff settings", () => {
  const error = configError(
    `${FUNCTIONS}defaults:\n` + //          line 6
      `  timeout_ms: 0\n` + //              line 7
      `  retries: 1.5\n` + //               line 8
      `  backoff:\n` + //                   line 9
      `    factor: 0.5\n` + //              line 10
      `    base_delay_ms: x\n` + //         line 11
      `    jitter: 1\n` + //                line 12
      `scenarios:\n  one:\n    tasks:\n      - task: task_a\n`,
  );
  assertProblems(error, [
    { line: 7, column: 15, path: "defaults.timeout_ms" },
    { line: 8, column: 12, path: "defaults.retries" },
    { line: 10, column: 13, path: "defaults.backoff.factor" },
    { line: 11, column: 20, path: "defaults.backoff.base_delay_ms" },
    { line: 12, column: 5, path: "defaults.backoff.jitter" },
  ]);
  assert.match(error.problems[2].message, /must be a number from 1 to 10, but is 0\.5/);
  assert.match(error.problems[3].message, /must be a whole number from 0 to 86400000, but is 'x'/);
  assert.match(error.problems[4].message, /use base_delay_ms, factor, max_delay_ms/);
});

Deno.test("parseConfig() refuses retry settings beyond what a worker accepts", () => {
  const message = onlyProblem(
    `${FUNCTIONS}scenarios:\n  one:\n    tasks:\n      - task: task_a\n        retries: 26\n`,
    { line: 10, column: 18, path: "scenarios.one.tasks[0].retries" },
  );
  assert.equal(message, "must be a whole number from 0 to 25, but is 26");
});

Deno.test("parseConfig() refuses a count above the limit", () => {
  const message = onlyProblem(
    `${FUNCTIONS}scenarios:\n  one:\n    tasks:\n      - task: task_a\n        count: 100001\n`,
    { line: 10, column: 16, path: "scenarios.one.tasks[0].count" },
  );
  assert.match(message, /^must be at most 100000/);
});

Deno.test("parseConfig() refuses an expected result for a task expected to fail", () => {
  const message = onlyProblem(
    `${FUNCTIONS}scenarios:\n  one:\n    tasks:\n      - task: task_a\n` +
      `        expect:\n          status: error\n          result: hi\n`,
    { line: 12, column: 19, path: "scenarios.one.tasks[0].expect.result" },
  );
  assert.equal(message, "cannot be expected of a task expected to fail: remove it");
});

Deno.test("parseConfig() refuses an expected result alongside an expected error type", () => {
  const message = onlyProblem(
    `${FUNCTIONS}scenarios:\n  one:\n    tasks:\n      - task: task_a\n` +
      `        expect: { error_type: Boom, result: hi }\n`,
    { line: 10, column: 45, path: "scenarios.one.tasks[0].expect.result" },
  );
  assert.equal(message, "cannot be expected of a task expected to fail: remove it");
});

Deno.test("parseConfig() refuses an expected error type for a task expected to succeed", () => {
  const message = onlyProblem(
    `${FUNCTIONS}scenarios:\n  one:\n    tasks:\n      - task: task_a\n` +
      `        expect: { status: success, error_type: Boom }\n`,
    { line: 10, column: 48, path: "scenarios.one.tasks[0].expect.error_type" },
  );
  assert.match(message, /cannot be expected of a task expected to succeed/);
});

Deno.test("parseConfig() refuses an expected status other than success or error", () => {
  const message = onlyProblem(
    `${FUNCTIONS}scenarios:\n  one:\n    tasks:\n      - task: task_a\n` +
      `        expect: { status: timeout }\n`,
    { line: 10, column: 27, path: "scenarios.one.tasks[0].expect.status" },
  );
  assert.equal(message, "must be success or error, but is 'timeout'");
});

Deno.test("parseConfig() expects an error when only error_type is given", () => {
  const config = parseConfig(
    `${FUNCTIONS}scenarios:\n  one:\n    tasks:\n      - task: task_a\n` +
      `        expect: { error_type: Boom }\n      - task: task_b\n`,
    FILE,
  );
  const [a, b] = scenario(config, "one").tasks;
  assert.deepEqual(a.expect, { status: "error", errorType: "Boom" });
  assert.deepEqual(b.expect, { status: "success" });
});

Deno.test("parseConfig() keeps an expected result of any YAML type, null included", () => {
  const config = parseConfig(
    `${FUNCTIONS}scenarios:\n  one:\n    tasks:\n` +
      `      - task: task_a\n        expect: { result: null }\n` +
      `      - task: task_a\n        expect: { result: { a: [1, two] } }\n`,
    FILE,
  );
  const [first, second] = scenario(config, "one").tasks;
  assert.deepEqual(first.expect, { status: "success", result: null });
  assert.deepEqual(second.expect, { status: "success", result: { a: [1, "two"] } });
});

// --- scenarios ----------------------------------------------------------------------

const TWO_SCENARIOS = `scenarios:\n  first:\n    tasks:\n      - task: task_a\n` +
  `  second:\n    tasks:\n      - task: task_b\n`;

Deno.test("parseConfig() refuses a default_scenario that names no scenario", () => {
  const message = onlyProblem(`default_scenario: third\n${FUNCTIONS}${TWO_SCENARIOS}`, {
    line: 1,
    column: 19,
    path: "default_scenario",
  });
  assert.equal(message, "'third' is not a scenario of this file: use one of first, second");
});

Deno.test("parseConfig() refuses several scenarios without a default_scenario", () => {
  const message = onlyProblem(`# comment\n${FUNCTIONS}${TWO_SCENARIOS}`, {
    line: 2,
    column: 1,
    path: "",
  });
  assert.equal(
    message,
    "has several scenarios but no 'default_scenario': name the one to run by default",
  );
});

Deno.test("parseConfig() runs the only scenario by default", () => {
  const config = parseConfig(
    `${FUNCTIONS}scenarios:\n  solo:\n    tasks:\n      - task: task_a\n`,
    FILE,
  );
  assert.equal(config.defaultScenario, "solo");
  assert.equal(config.name, FILE);
  assert.equal(scenario(config, "solo").description, "");
});

Deno.test("parseConfig() uses the default_scenario it names", () => {
  const config = parseConfig(
    `name: Demo\ndefault_scenario: second\n${FUNCTIONS}${TWO_SCENARIOS}`,
    FILE,
  );
  assert.equal(config.defaultScenario, "second");
  assert.equal(config.name, "Demo");
});

// --- expansion and defaults ------------------------------------------------------

Deno.test("parseConfig() expands 'count' and numbers the labels of repeated functions", () => {
  const config = parseConfig(
    `${FUNCTIONS}scenarios:\n  one:\n    tasks:\n` +
      `      - task: task_a\n        count: 3\n        payload: { work_ms: 1 }\n` +
      `      - task: task_b\n` +
      `      - task: task_a\n`,
    FILE,
  );
  const tasks = scenario(config, "one").tasks;
  assert.deepEqual(tasks.map((t) => t.label), [
    "task_a#1",
    "task_a#2",
    "task_a#3",
    "task_b",
    "task_a#4",
  ]);
  assert.deepEqual(tasks.map((t) => t.queue), [
    "queue_a",
    "queue_a",
    "queue_a",
    "queue_b",
    "queue_a",
  ]);
  assert.deepEqual(tasks.slice(0, 3).map((t) => t.payload), [
    { work_ms: 1 },
    { work_ms: 1 },
    { work_ms: 1 },
  ]);
  assert.equal(tasks[3].payload, undefined);
});

Deno.test("parseConfig() gives tasks the built-in defaults when 'defaults' is absent", () => {
  const config = parseConfig(
    `${FUNCTIONS}scenarios:\n  one:\n    tasks:\n      - task: task_a\n`,
    FILE,
  );
  const [task] = scenario(config, "one").tasks;
  assert.equal(task.timeoutMs, DEFAULT_TIMEOUT_MS);
  assert.deepEqual(task.retry, {});
  assert.deepEqual(task.expect, { status: "success" });
});

Deno.test("parseConfig() applies 'defaults' to tasks and lets each task override them", () => {
  const config = parseConfig(
    `${FUNCTIONS}defaults:\n  timeout_ms: 1000\n  retries: 2\n` +
      `  backoff: { base_delay_ms: 10, factor: 3, max_delay_ms: 100 }\n` +
      `scenarios:\n  one:\n    tasks:\n` +
      `      - task: task_a\n` +
      `      - task: task_b\n        timeout_ms: 50\n        retries: 0\n` +
      `        backoff: { factor: 1.5 }\n`,
    FILE,
  );
  const [inherits, overrides] = scenario(config, "one").tasks;
  assert.equal(inherits.timeoutMs, 1000);
  assert.deepEqual(inherits.retry, {
    max_retries: 2,
    base_delay_ms: 10,
    factor: 3,
    max_delay_ms: 100,
  });
  assert.equal(overrides.timeoutMs, 50);
  assert.deepEqual(overrides.retry, {
    max_retries: 0,
    base_delay_ms: 10,
    factor: 1.5,
    max_delay_ms: 100,
  });
});

Deno.test("parseConfig() gives a task only the retry settings that are set somewhere", () => {
  const config = parseConfig(
    `${FUNCTIONS}defaults:\n  timeout_ms: 1000\n` +
      `scenarios:\n  one:\n    tasks:\n      - task: task_a\n        backoff: { max_delay_ms: 7 }\n`,
    FILE,
  );
  const [task] = scenario(config, "one").tasks;
  assert.deepEqual(task.retry, { max_delay_ms: 7 });
});

Deno.test("parseConfig() reports a function without a queue once, where it is declared", () => {
  const text = `functions:
  task_a: {}
scenarios:
  basic:
    tasks:
      - task: task_a
`;
  assert.throws(() => parseConfig(text, "f.yml"), (error: unknown) => {
    assert.ok(error instanceof ConfigError);
    assert.equal(error.problems.length, 1, error.message);
    assert.equal(error.problems[0].path, "functions.task_a");
    assert.match(error.problems[0].message, /has no 'queue'/);
    return true;
  });
});

Deno.test("parseConfig() reads each function's broker user, its name by default", () => {
  const config = parseConfig(
    `functions:
  task_a: { queue: queue_a, user: worker-a@example }
  task_b: { queue: queue_b }
scenarios:
  s: { tasks: [{ task: task_a }] }
`,
    FILE,
  );
  assert.deepEqual(config.functions.get("task_a"), { queue: "queue_a", user: "worker-a@example" });
  assert.deepEqual(config.functions.get("task_b"), { queue: "queue_b", user: "task_b" });
});

Deno.test("parseConfig() refuses a user that is not a broker user name", () => {
  const message = onlyProblem(
    `functions:
  task_a: { queue: queue_a, user: "no spaces" }
scenarios:
  s: { tasks: [{ task: task_a }] }
`,
    { line: 2, column: 35, path: "functions.task_a.user" },
  );
  assert.equal(
    message,
    "user 'no spaces' is not a broker user name: use letters, digits, _ . @ -, at most 64",
  );
});

Deno.test("parseConfig() reads a function served by Celery workers: protocol celery and its celery_name", () => {
  const config = parseConfig(
    `functions:
  task_a: { queue: queue_a }
  task_c: { queue: queue_c, protocol: celery, celery_name: tasks.task_c }
  task_d: { queue: queue_d, protocol: native }
scenarios:
  s: { tasks: [{ task: task_a }, { task: task_c, retries: 2 }] }
`,
    FILE,
  );
  assert.deepEqual(config.functions.get("task_c"), {
    queue: "queue_c",
    user: "task_c",
    protocol: "celery",
    celeryName: "tasks.task_c",
  });
  assert.deepEqual(config.functions.get("task_a"), { queue: "queue_a", user: "task_a" });
  assert.deepEqual(config.functions.get("task_d"), { queue: "queue_d", user: "task_d" });
  assert.deepEqual(scenario(config, "s").tasks.map((t) => [t.task, t.queue, t.retry]), [
    ["task_a", "queue_a", {}],
    ["task_c", "queue_c", { max_retries: 2 }],
  ]);
});

Deno.test("parseConfig() refuses a protocol or celery_name that does not fit, at the field", () => {
  const text = (settings: string) =>
    `functions:\n  task_c: { queue: queue_c, ${settings} }\nscenarios:\n  s: { tasks: [{ task: task_c }] }\n`;
  assert.equal(
    onlyProblem(text("protocol: amqp"), {
      line: 2,
      column: 39,
      path: "functions.task_c.protocol",
    }),
    'must be native or celery, but is "amqp": use celery for a function served by Celery workers, or leave it out',
  );
  assert.match(
    onlyProblem(text("protocol: celery"), {
      line: 2,
      column: 11,
      path: "functions.task_c.celery_name",
    }),
    /^is missing, and protocol celery needs it: give the Celery task name .* such as tasks\.task_c$/,
  );
  assert.match(
    onlyProblem(text("celery_name: tasks.task_c"), {
      line: 2,
      column: 42,
      path: "functions.task_c.celery_name",
    }),
    /^is only for a function served by Celery workers: set protocol to celery, or remove celery_name$/,
  );
  assert.match(
    onlyProblem(text('protocol: celery, celery_name: "tasks c"'), {
      line: 2,
      column: 60,
      path: "functions.task_c.celery_name",
    }),
    /^must be a Celery task name \(dotted Python names, such as tasks\.task_c\), but is "tasks c"$/,
  );
});
