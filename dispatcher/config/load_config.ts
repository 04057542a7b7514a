/**
 * Loads and validates `test-config.yml`: scenarios of tasks with payloads,
 * timeouts, retries and expected results, over the functions of the
 * function registry (`core/registry.ts`) and any the file adds under
 * `functions:`. Every problem is reported at once, each with its file, line
 * and column and what to change (see `core/yaml_checker.ts`).
 *
 * @module
 */

import { dirname, join } from "node:path";
import { parse } from "yaml";
import {
  NAME_PATTERN,
  type Payload,
  RETRY_LIMITS,
  type RetryOverrides,
} from "../../core/contract/mod.ts";
import {
  type FunctionEntry,
  type FunctionRoute,
  loadRegistry,
  readFunctionsSection,
  type Registry,
  routeOf,
} from "../../core/registry.ts";
import { ConfigError } from "../../core/config_error.ts";
import type { Schedule } from "../../core/schedule.ts";
import { isObject, show, YamlChecker, type YamlPath } from "../../core/yaml_checker.ts";
import { type EventSpec, readScenarioEvents } from "./scenario_events.ts";

/** What a task's reply must be for the task to pass. */
export interface Expectation {
  /** @default {"success"} */
  status: "success" | "error";
  /** When set, the reply's `result` must equal it (deep equality). */
  result?: unknown;
  /** When set, the reply's `error.type` must equal it. */
  errorType?: string;
}

/** One task of a scenario, with defaults applied. */
export interface TaskSpec {
  /** Unique within the scenario: the function name, numbered when it repeats. */
  label: string;
  /** The function, as in the request's `task` field. */
  task: string;
  queue: string;
  payload?: Payload;
  timeoutMs: number;
  retry: RetryOverrides;
  expect: Expectation;
}

/** A named set of tasks dispatched together. */
export interface Scenario {
  name: string;
  description: string;
  tasks: TaskSpec[];
  /** Events to emit, and the runs each must trigger (`scenario_events.ts`), if any. */
  events?: EventSpec[];
}

/** A validated configuration file. */
export interface Config {
  /** The file it came from, as given. */
  file: string;
  name: string;
  defaultScenario: string;
  /**
   * The functions the tools address: the registry's (less those of a
   * compose profile that no scenario calls) and the file's own, each with
   * its queue and the broker user of its workers.
   */
  functions: Map<string, FunctionRoute>;
  scenarios: Map<string, Scenario>;
  /** The function registry the functions came from, if any. */
  registry?: string;
  /** The triggers and emits of the functions that have any (docs/events.md). */
  subscriptions?: Map<string, { triggers?: readonly string[]; emits?: string }>;
  /** The schedules of the functions that have one (docs/schedules.md). */
  schedules?: Map<string, Schedule>;
}

/** Options for {@linkcode parseConfig}. */
export interface ParseConfigOptions {
  /** The functions the file's scenarios may call besides its own `functions:`. */
  registry?: Registry;
}

/** Where a configuration file's registry is unless its `registry:` says: beside it. */
export const REGISTRY_BESIDE = "functions/registry.yaml";

/** Default timeout of a task when neither it nor `defaults` gives one. */
export const DEFAULT_TIMEOUT_MS = 30_000;

const TOP_KEYS = ["name", "default_scenario", "registry", "functions", "defaults", "scenarios"];
const DEFAULT_KEYS = ["timeout_ms", "retries", "backoff"];
const SCENARIO_KEYS = ["description", "tasks", "events"];
const TASK_KEYS = ["task", "payload", "count", "timeout_ms", "retries", "backoff", "expect"];
const BACKOFF_KEYS = ["base_delay_ms", "factor", "max_delay_ms"] as const;
const EXPECT_KEYS = ["status", "result", "error_type"];
const MAX_COUNT = 100_000;

function name(
  check: YamlChecker,
  value: unknown,
  path: YamlPath,
  what: string,
  atKey = false,
): value is string {
  return check.matches(value, path, NAME_PATTERN, {
    what,
    rule: "is not lower_snake_case: use letters, digits and _, starting with a letter",
    atKey,
  });
}

interface Defaults {
  timeoutMs: number;
  retry: RetryOverrides;
}

function readRetry(
  check: YamlChecker,
  source: Record<string, unknown>,
  path: YamlPath,
  inherited: RetryOverrides,
): RetryOverrides {
  const retry: RetryOverrides = { ...inherited };
  // The contract's bounds: a worker refuses a request beyond them.
  const retries = check.number(source.retries, [...path, "retries"], {
    min: 0,
    max: RETRY_LIMITS.max_retries,
    integer: true,
  });
  if (retries !== undefined) retry.max_retries = retries;
  if (source.backoff !== undefined) {
    const backoffPath = [...path, "backoff"];
    if (check.mapping(source.backoff, backoffPath, [...BACKOFF_KEYS])) {
      for (const key of BACKOFF_KEYS) {
        const value = check.number(source.backoff[key], [...backoffPath, key], {
          min: key === "factor" ? 1 : 0,
          max: RETRY_LIMITS[key],
          integer: key !== "factor",
        });
        if (value !== undefined) retry[key] = value;
      }
    }
  }
  return retry;
}

function readExpect(check: YamlChecker, value: unknown, path: YamlPath): Expectation {
  const expect: Expectation = { status: "success" };
  if (value === undefined) return expect;
  if (!check.mapping(value, path, EXPECT_KEYS)) return expect;
  if (value.status !== undefined) {
    if (value.status !== "success" && value.status !== "error") {
      check.report([...path, "status"], `must be success or error, but is ${show(value.status)}`);
    } else expect.status = value.status;
  }
  if ("result" in value) expect.result = value.result;
  const errorType = check.string(value.error_type, [...path, "error_type"]);
  if (errorType !== undefined) {
    expect.errorType = errorType;
    if (value.status === undefined) expect.status = "error";
  }
  if (expect.status === "error" && "result" in value) {
    check.report([...path, "result"], "cannot be expected of a task expected to fail: remove it");
  }
  if (expect.status === "success" && expect.errorType !== undefined) {
    check.report(
      [...path, "error_type"],
      "cannot be expected of a task expected to succeed: remove it or set status: error",
    );
  }
  return expect;
}

/** Labels repeated functions `task_a#1`, `task_a#2`, ... so that each task has its own. */
function numberLabels(tasks: TaskSpec[]): void {
  const seen = new Map<string, number>();
  for (const spec of tasks) seen.set(spec.task, (seen.get(spec.task) ?? 0) + 1);
  const numbered = new Map<string, number>();
  for (const spec of tasks) {
    if ((seen.get(spec.task) ?? 0) > 1) {
      const n = (numbered.get(spec.task) ?? 0) + 1;
      numbered.set(spec.task, n);
      spec.label = `${spec.task}#${n}`;
    }
  }
}

function readTasks(
  check: YamlChecker,
  value: unknown,
  path: YamlPath,
  functions: Map<string, FunctionRoute>,
  defaults: Defaults,
  /** Every name under `functions`, valid or not: a broken one is reported there. */
  declared: Set<string>,
): TaskSpec[] {
  if (!Array.isArray(value) || value.length === 0) {
    check.report(path, `must be a non-empty list of tasks, but is ${show(value)}`);
    return [];
  }
  const tasks: TaskSpec[] = [];
  value.forEach((entry, index) => {
    const taskPath = [...path, index];
    if (!check.mapping(entry, taskPath, TASK_KEYS)) return;
    const task = entry.task;
    if (task === undefined) {
      check.report(taskPath, "has no 'task': name the function to run, such as task_a");
      return;
    }
    if (!name(check, task, [...taskPath, "task"], "function")) return;
    const queue = functions.get(task)?.queue;
    if (queue === undefined && !declared.has(task)) {
      check.report(
        [...taskPath, "task"],
        `'${task}' is not a function of this file or its registry: use one of ${
          [...functions.keys()].join(", ") || "(none)"
        }, or add it to functions/registry.yaml (deno task new) or under 'functions'`,
      );
    }
    let payload: Payload | undefined;
    if (entry.payload !== undefined && entry.payload !== null) {
      if (!isObject(entry.payload)) {
        check.report(
          [...taskPath, "payload"],
          `must be a mapping (a JSON object), but is ${show(entry.payload)}`,
        );
      } else payload = entry.payload;
    }
    const count = check.number(entry.count, [...taskPath, "count"], { min: 1, integer: true }) ?? 1;
    if (count > MAX_COUNT) {
      check.report(
        [...taskPath, "count"],
        `must be at most ${MAX_COUNT}: use 'deno task load' for more`,
      );
      return;
    }
    const timeoutMs = check.number(entry.timeout_ms, [...taskPath, "timeout_ms"], {
      min: 1,
      integer: true,
    }) ?? defaults.timeoutMs;
    const retry = readRetry(check, entry, taskPath, defaults.retry);
    const expect = readExpect(check, entry.expect, [...taskPath, "expect"]);
    for (let i = 0; i < count; i++) {
      tasks.push({ label: task, task, queue: queue ?? "", payload, timeoutMs, retry, expect });
    }
  });
  numberLabels(tasks);
  return tasks;
}

function sameRoute(a: FunctionRoute, b: FunctionRoute): boolean {
  return a.queue === b.queue && a.user === b.user && a.protocol === b.protocol &&
    a.celeryName === b.celeryName;
}

function describeRoute(route: FunctionRoute): string {
  const celery = route.protocol === "celery" ? `, Celery task ${route.celeryName}` : "";
  return `queue ${route.queue}, user ${route.user}${celery}`;
}

/**
 * The functions a scenario may call: the registry's, then the file's own,
 * each of which may repeat a registry entry but not contradict it.
 */
function readFunctions(
  check: YamlChecker,
  value: unknown,
  registry: Registry | undefined,
): Map<string, FunctionEntry> {
  const known = new Map(registry?.functions ?? []);
  if (value === undefined) {
    if (registry === undefined) {
      check.report(
        ["functions"],
        `is missing, and there is no function registry (${REGISTRY_BESIDE} beside this file): add 'functions:', or 'registry:' with the path of yours`,
      );
    }
    return known;
  }
  const own = readFunctionsSection(check, value, ["functions"], { deployed: false });
  const queues = new Map([...known.values()].map((entry) => [entry.queue, entry.name]));
  for (const [name, entry] of own) {
    const listed = known.get(name);
    if (listed !== undefined) {
      if (!sameRoute(routeOf(entry), routeOf(listed))) {
        check.report(
          ["functions", name],
          `contradicts ${name} of the registry (${registry!.declared.get(name)}: ${
            describeRoute(routeOf(listed))
          }) with ${describeRoute(routeOf(entry))}: remove it here, or make the two agree`,
          true,
        );
      }
      continue;
    }
    const other = queues.get(entry.queue);
    if (other !== undefined) {
      check.report(
        ["functions", name, "queue"],
        `'${entry.queue}' is already the queue of ${other} (${
          registry!.declared.get(other)
        }): each function needs its own queue`,
      );
      continue;
    }
    known.set(name, entry);
  }
  return known;
}

/**
 * What the tools address: every function but a registry one of a compose
 * profile (started only on demand, such as a Celery worker) that no
 * scenario calls and the file does not name.
 */
function addressed(
  known: Map<string, FunctionEntry>,
  scenarios: Map<string, Scenario>,
  own: Set<string>,
): Map<string, FunctionRoute> {
  const called = new Set(
    [...scenarios.values()].flatMap((s) => [
      ...s.tasks.map((t) => t.task),
      ...(s.events ?? []).flatMap((e) => e.expectRuns.map((run) => run.function)),
    ]),
  );
  return new Map(
    [...known].filter(([name, entry]) =>
      entry.profile === undefined || called.has(name) || own.has(name)
    ).map(([name, entry]) => [name, routeOf(entry)]),
  );
}

function readScenarios(
  check: YamlChecker,
  value: unknown,
  functions: Map<string, FunctionRoute>,
  defaults: Defaults,
  declared: Set<string>,
  known: Map<string, FunctionEntry>,
): Map<string, Scenario> {
  const scenarios = new Map<string, Scenario>();
  if (!isObject(value) || Object.keys(value).length === 0) {
    check.report(["scenarios"], `must map scenario names to scenarios, but is ${show(value)}`);
    return scenarios;
  }
  for (const [scenarioName, scenario] of Object.entries(value)) {
    const path = ["scenarios", scenarioName];
    if (!name(check, scenarioName, path, "scenario name", true)) continue;
    if (!check.mapping(scenario, path, SCENARIO_KEYS)) continue;
    const description = check.string(scenario.description, [...path, "description"]) ?? "";
    // A scenario of events alone needs no tasks.
    const tasks = scenario.tasks === undefined && scenario.events !== undefined ? [] : readTasks(
      check,
      scenario.tasks,
      [...path, "tasks"],
      functions,
      defaults,
      declared,
    );
    const events = scenario.events === undefined ? undefined : readScenarioEvents(
      check,
      scenario.events,
      [...path, "events"],
      known,
      defaults.timeoutMs,
    );
    scenarios.set(scenarioName, {
      name: scenarioName,
      description,
      tasks,
      ...(events && { events }),
    });
  }
  return scenarios;
}

function schedulesOf(known: Map<string, FunctionEntry>): Pick<Config, "schedules"> {
  const scheduled = [...known.values()].filter((entry) => entry.schedule !== undefined);
  if (scheduled.length === 0) return {};
  return { schedules: new Map(scheduled.map((entry) => [entry.name, entry.schedule!])) };
}

function subscriptionsOf(known: Map<string, FunctionEntry>): Pick<Config, "subscriptions"> {
  const subscribed = [...known.values()].filter((entry) => entry.triggers || entry.emits);
  if (subscribed.length === 0) return {};
  return {
    subscriptions: new Map(
      subscribed.map((entry) => [entry.name, {
        ...(entry.triggers && { triggers: entry.triggers }),
        ...(entry.emits && { emits: entry.emits }),
      }]),
    ),
  };
}

/**
 * Validates the text of a configuration file; `file` is only used in
 * messages. Its scenarios may call the functions of `options.registry`.
 */
export function parseConfig(
  text: string,
  file: string,
  options: ParseConfigOptions = {},
): Config {
  const { root, check } = YamlChecker.parse(text, file);
  if (!check.mapping(root, [], TOP_KEYS)) throw ConfigError.of(file, check.problems);

  let title = file;
  if (root.name !== undefined) {
    if (typeof root.name !== "string" || root.name.trim() === "") {
      check.report(["name"], `must be a non-empty string, but is ${show(root.name)}`);
    } else title = root.name;
  }
  if (root.registry !== undefined) check.string(root.registry, ["registry"]);
  const known = readFunctions(check, root.functions, options.registry);
  const functions = new Map([...known].map(([name, entry]) => [name, routeOf(entry)]));
  const own = new Set(isObject(root.functions) ? Object.keys(root.functions) : []);
  const declared = new Set([...own, ...options.registry?.functions.keys() ?? []]);

  const defaults: Defaults = { timeoutMs: DEFAULT_TIMEOUT_MS, retry: {} };
  if (root.defaults !== undefined && check.mapping(root.defaults, ["defaults"], DEFAULT_KEYS)) {
    defaults.timeoutMs = check.number(root.defaults.timeout_ms, ["defaults", "timeout_ms"], {
      min: 1,
      integer: true,
    }) ?? DEFAULT_TIMEOUT_MS;
    defaults.retry = readRetry(check, root.defaults, ["defaults"], {});
  }
  const scenarios = readScenarios(check, root.scenarios, functions, defaults, declared, known);

  let defaultScenario = root.default_scenario;
  if (defaultScenario === undefined) {
    if (scenarios.size === 1) defaultScenario = [...scenarios.keys()][0];
    else if (scenarios.size > 1) {
      check.report(
        [],
        "has several scenarios but no 'default_scenario': name the one to run by default",
      );
    }
  } else if (typeof defaultScenario !== "string" || !scenarios.has(defaultScenario)) {
    check.report(
      ["default_scenario"],
      `${show(defaultScenario)} is not a scenario of this file: use one of ${
        [...scenarios.keys()].join(", ")
      }`,
    );
  }
  check.throwIfAny(file);
  return {
    file,
    name: title,
    defaultScenario: defaultScenario as string,
    functions: addressed(known, scenarios, own),
    scenarios,
    ...(options.registry && { registry: options.registry.file }),
    ...subscriptionsOf(known),
    ...schedulesOf(known),
  };
}

/**
 * The registry `text` (the file at `file`) names with `registry:`, relative
 * to the file, else the one beside it if there is one.
 */
async function registryOf(text: string, file: string): Promise<Registry | undefined> {
  let named: unknown;
  try {
    named = (parse(text) as { registry?: unknown } | null)?.registry;
  } catch {
    return undefined; // parseConfig reports the YAML's problems.
  }
  if (named !== undefined && typeof named !== "string") return undefined;
  const path = join(dirname(file), named ?? REGISTRY_BESIDE);
  if (named === undefined) {
    try {
      if (!(await Deno.stat(path)).isFile) return undefined;
    } catch {
      return undefined;
    }
  }
  return await loadRegistry(path);
}

/** Reads and validates a configuration file. */
export async function loadConfig(file: string): Promise<Config> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? "it does not exist: pass --config with the path of your test-config.yml"
      : `it cannot be read: ${(error as Error).message}`;
    throw new ConfigError(`Cannot read ${file} as ${reason}`, { file, cause: error });
  }
  return parseConfig(text, file, { registry: await registryOf(text, file) });
}
