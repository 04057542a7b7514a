/**
 * Loads and validates `test-config.yml`: the functions and their queues, and
 * scenarios of tasks with payloads, timeouts, retries and expected results.
 * Every problem is reported at once, each with its file, line and column and
 * what to change.
 *
 * @module
 */

import { isMap, LineCounter, parseDocument } from "yaml";
import type { Payload, RetryOverrides } from "../functions/_runtime/contract/mod.ts";

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
}

/** A validated configuration file. */
export interface Config {
  /** The file it came from, as given. */
  file: string;
  name: string;
  defaultScenario: string;
  /** Function name to queue name. */
  functions: Map<string, string>;
  scenarios: Map<string, Scenario>;
}

/** One problem in a configuration file. */
export interface ConfigProblem {
  line: number;
  column: number;
  /** Dotted path of the setting, such as `scenarios.basic.tasks[0].task`. */
  path: string;
  message: string;
}

/** A configuration file that cannot be used; `message` lists every problem. */
export class ConfigError extends Error {
  /** The problems, in file order. */
  readonly problems: ConfigProblem[];
  readonly file: string;

  /**
   * @param file The file, as given.
   * @param problems What is wrong, where.
   */
  constructor(file: string, problems: ConfigProblem[], message?: string) {
    const lines = problems.map((p) =>
      `${file}:${p.line}:${p.column}: ${p.path ? `${p.path}: ` : ""}${p.message}`
    );
    super(
      message ??
        `Cannot use ${file} as it has ${problems.length} problem${
          problems.length === 1 ? "" : "s"
        }:\n${lines.join("\n")}`,
    );
    this.name = "ConfigError";
    this.file = file;
    this.problems = problems;
  }
}

/** Default timeout of a task when neither it nor `defaults` gives one. */
export const DEFAULT_TIMEOUT_MS = 30_000;

const NAME = /^[a-z][a-z0-9_]{0,62}$/;
const TOP_KEYS = ["name", "default_scenario", "functions", "defaults", "scenarios"];
const DEFAULT_KEYS = ["timeout_ms", "retries", "backoff"];
const SCENARIO_KEYS = ["description", "tasks"];
const TASK_KEYS = ["task", "payload", "count", "timeout_ms", "retries", "backoff", "expect"];
const BACKOFF_KEYS = ["base_delay_ms", "factor", "max_delay_ms"] as const;
const EXPECT_KEYS = ["status", "result", "error_type"];
const MAX_COUNT = 100_000;

type Path = (string | number)[];
type Node = { range?: [number, number, number] | null };

function formatPath(path: Path): string {
  return path.map((part, i) => typeof part === "number" ? `[${part}]` : i === 0 ? part : `.${part}`)
    .join("");
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function show(value: unknown): string {
  if (value === undefined) return "missing";
  if (value === null) return "empty";
  if (typeof value === "string") return `'${value}'`;
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return String(value);
}

class Checker {
  readonly problems: ConfigProblem[] = [];
  readonly #doc: ReturnType<typeof parseDocument>;
  readonly #lines: LineCounter;

  constructor(doc: ReturnType<typeof parseDocument>, lines: LineCounter) {
    this.#doc = doc;
    this.#lines = lines;
  }

  /** Records a problem at the deepest part of `path` that exists in the file. */
  report(path: Path, message: string, atKey = false): void {
    let offset = 0;
    for (let depth = path.length; depth >= 0; depth--) {
      const node = this.#locate(path.slice(0, depth), atKey && depth === path.length);
      if (node?.range) {
        offset = node.range[0];
        break;
      }
    }
    const { line, col } = this.#lines.linePos(offset);
    this.problems.push({ line, column: col, path: formatPath(path), message });
  }

  #locate(path: Path, key: boolean): Node | undefined {
    if (path.length === 0) return this.#doc.contents as Node | undefined;
    if (key) {
      const parent = this.#doc.getIn(path.slice(0, -1), true);
      if (isMap(parent)) {
        const pair = parent.items.find((item) =>
          (item.key as { value?: unknown })?.value === path.at(-1)
        );
        return pair?.key as Node | undefined;
      }
    }
    return this.#doc.getIn(path, true) as Node | undefined;
  }

  mapping(value: unknown, path: Path, allowed: string[]): value is Record<string, unknown> {
    if (!isObject(value)) {
      this.report(path, `must be a mapping, but is ${show(value)}`);
      return false;
    }
    for (const key of Object.keys(value)) {
      if (!allowed.includes(key)) {
        this.report([...path, key], `is not a setting here: use ${allowed.join(", ")}`, true);
      }
    }
    return true;
  }

  name(value: unknown, path: Path, what: string, atKey = false): value is string {
    if (typeof value !== "string" || !NAME.test(value)) {
      this.report(
        path,
        `${what} ${
          show(value)
        } is not lower_snake_case: use letters, digits and _, starting with a letter`,
        atKey,
      );
      return false;
    }
    return true;
  }

  number(
    value: unknown,
    path: Path,
    { min, integer }: { min: number; integer: boolean },
  ): number | undefined {
    if (value === undefined) return undefined;
    if (
      typeof value !== "number" || !Number.isFinite(value) || value < min ||
      (integer && !Number.isInteger(value))
    ) {
      this.report(
        path,
        `must be a ${integer ? "whole " : ""}number >= ${min}, but is ${show(value)}`,
      );
      return undefined;
    }
    return value;
  }
}

interface Defaults {
  timeoutMs: number;
  retry: RetryOverrides;
}

function readRetry(
  check: Checker,
  source: Record<string, unknown>,
  path: Path,
  inherited: RetryOverrides,
): RetryOverrides {
  const retry: RetryOverrides = { ...inherited };
  const retries = check.number(source.retries, [...path, "retries"], { min: 0, integer: true });
  if (retries !== undefined) retry.max_retries = retries;
  if (source.backoff !== undefined) {
    const backoffPath = [...path, "backoff"];
    if (check.mapping(source.backoff, backoffPath, [...BACKOFF_KEYS])) {
      for (const key of BACKOFF_KEYS) {
        const value = check.number(source.backoff[key], [...backoffPath, key], {
          min: key === "factor" ? 1 : 0,
          integer: key !== "factor",
        });
        if (value !== undefined) retry[key] = value;
      }
    }
  }
  return retry;
}

function readExpect(check: Checker, value: unknown, path: Path): Expectation {
  const expect: Expectation = { status: "success" };
  if (value === undefined) return expect;
  if (!check.mapping(value, path, EXPECT_KEYS)) return expect;
  if (value.status !== undefined) {
    if (value.status !== "success" && value.status !== "error") {
      check.report([...path, "status"], `must be success or error, but is ${show(value.status)}`);
    } else expect.status = value.status;
  }
  if ("result" in value) expect.result = value.result;
  if (value.error_type !== undefined) {
    if (typeof value.error_type !== "string") {
      check.report([...path, "error_type"], `must be a string, but is ${show(value.error_type)}`);
    } else {
      expect.errorType = value.error_type;
      if (value.status === undefined) expect.status = "error";
    }
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

function readTasks(
  check: Checker,
  value: unknown,
  path: Path,
  functions: Map<string, string>,
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
    if (!check.name(task, [...taskPath, "task"], "function")) return;
    const queue = functions.get(task);
    if (queue === undefined && !declared.has(task)) {
      check.report(
        [...taskPath, "task"],
        `'${task}' is not a function of this file: use one of ${
          [...functions.keys()].join(", ") || "(none)"
        }, or add it under 'functions'`,
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
  return tasks;
}

function readFunctions(check: Checker, value: unknown): Map<string, string> {
  const functions = new Map<string, string>();
  if (!isObject(value)) {
    check.report(["functions"], `must map each function to its queue, but is ${show(value)}`);
    return functions;
  }
  const queues = new Map<string, string>();
  for (const [name, settings] of Object.entries(value)) {
    const path = ["functions", name];
    if (!check.name(name, path, "function name", true)) continue;
    if (!check.mapping(settings, path, ["queue"])) continue;
    if (settings.queue === undefined) {
      check.report(path, `has no 'queue': name the queue ${name} consumes, such as queue_a`);
      continue;
    }
    if (!check.name(settings.queue, [...path, "queue"], "queue")) continue;
    const other = queues.get(settings.queue);
    if (other !== undefined) {
      check.report(
        [...path, "queue"],
        `'${settings.queue}' is already the queue of ${other}: each function needs its own queue`,
      );
      continue;
    }
    queues.set(settings.queue, name);
    functions.set(name, settings.queue);
  }
  return functions;
}

/** Validates a parsed document; `file` is only used in messages. */
export function parseConfig(text: string, file: string): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const check = new Checker(doc, lines);
  if (doc.errors.length > 0) {
    for (const error of doc.errors) {
      const { line, col } = lines.linePos(error.pos[0]);
      const detail = error.code === "DUPLICATE_KEY"
        ? "a key appears twice in one mapping: remove or rename one"
        : `${error.message}: fix the YAML syntax`;
      check.problems.push({ line, column: col, path: "", message: detail });
    }
    throw new ConfigError(file, check.problems);
  }
  const root = doc.toJS({ maxAliasCount: 100 });
  if (!check.mapping(root, [], TOP_KEYS)) throw new ConfigError(file, check.problems);

  let name = file;
  if (root.name !== undefined) {
    if (typeof root.name !== "string" || root.name.trim() === "") {
      check.report(["name"], `must be a non-empty string, but is ${show(root.name)}`);
    } else name = root.name;
  }
  const functions = readFunctions(check, root.functions);
  const declared = new Set(isObject(root.functions) ? Object.keys(root.functions) : []);

  const defaults: Defaults = { timeoutMs: DEFAULT_TIMEOUT_MS, retry: {} };
  if (root.defaults !== undefined && check.mapping(root.defaults, ["defaults"], DEFAULT_KEYS)) {
    defaults.timeoutMs = check.number(root.defaults.timeout_ms, ["defaults", "timeout_ms"], {
      min: 1,
      integer: true,
    }) ?? DEFAULT_TIMEOUT_MS;
    defaults.retry = readRetry(check, root.defaults, ["defaults"], {});
  }

  const scenarios = new Map<string, Scenario>();
  if (!isObject(root.scenarios) || Object.keys(root.scenarios).length === 0) {
    check.report(
      ["scenarios"],
      `must map scenario names to scenarios, but is ${show(root.scenarios)}`,
    );
  } else {
    for (const [scenarioName, scenario] of Object.entries(root.scenarios)) {
      const path = ["scenarios", scenarioName];
      if (!check.name(scenarioName, path, "scenario name", true)) continue;
      if (!check.mapping(scenario, path, SCENARIO_KEYS)) continue;
      let description = "";
      if (scenario.description !== undefined) {
        if (typeof scenario.description !== "string") {
          check.report(
            [...path, "description"],
            `must be a string, but is ${show(scenario.description)}`,
          );
        } else description = scenario.description;
      }
      const tasks = readTasks(
        check,
        scenario.tasks,
        [...path, "tasks"],
        functions,
        defaults,
        declared,
      );
      scenarios.set(scenarioName, { name: scenarioName, description, tasks });
    }
  }

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
  if (check.problems.length > 0) {
    check.problems.sort((a, b) => a.line - b.line || a.column - b.column);
    throw new ConfigError(file, check.problems);
  }
  return { file, name, defaultScenario: defaultScenario as string, functions, scenarios };
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
    throw new ConfigError(file, [], `Cannot read ${file} as ${reason}`);
  }
  return parseConfig(text, file);
}
