/**
 * The function registry: for each function, the queue its workers consume,
 * the broker user they run as, the protocol they speak and what its
 * deployments need. It is a data file, `functions/registry.yaml`, read with
 * npm:yaml and never by importing a function's code, and this is its one
 * parser: the registry, a configuration file's `functions:` section and the
 * client's `functions` option all go through {@linkcode entryFrom}, so one
 * rule holds everywhere. A function's module and the registry are the only
 * places a person writes its name; `deno task manifests` makes the
 * deployment files from the registry.
 *
 * Every setting of a function is one row of {@linkcode FUNCTION_FIELDS}: a
 * new one (an event pattern list, a schedule) is a row there and a property
 * of {@linkcode FunctionEntry}, and the checks of the whole function, if it
 * needs any, go in `crossProblems`.
 *
 * @module
 */

import {
  CELERY_NAME_PATTERN,
  isEventType,
  MAX_EVENT_TYPE_CHARS,
  NAME_PATTERN,
  topicPatternProblem,
} from "./contract/mod.ts";
import { STACK_USERS } from "./contract/users.ts";
import { ConfigError } from "./config_error.ts";
import { parseSchedule, type Schedule } from "./schedule.ts";
import { isObject, show, YamlChecker, type YamlPath } from "./yaml_checker.ts";

/** What a function's workers speak: the native contract, or Celery's protocol 2 with rpc:// results. */
export type FunctionProtocol = "native" | "celery";

/** The protocols a function may be served with. */
export const FUNCTION_PROTOCOLS: readonly FunctionProtocol[] = ["native", "celery"];

/** The registry's path from the project's root. */
export const DEFAULT_REGISTRY = "functions/registry.yaml";

/** Broker user names as RabbitMQ and the workers' `ALLOWED_SENDERS` take them. */
export const USER_PATTERN = /^[\w.@-]{1,64}$/;

/** Compose and Swarm service names the deployments give the workers: a DNS label. */
export const SERVICE_PATTERN = /^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** A compose profile, as `docker compose --profile` takes it. */
export const PROFILE_PATTERN = /^[a-z][a-z0-9_.-]{0,62}$/;

/** The compose services that are not a function's workers. */
export const STACK_SERVICES: readonly string[] = Object.freeze([
  "rabbitmq",
  "rabbitmq-2",
  "rabbitmq-3",
  "secrets-init",
  "erlang-cookie",
]);

/** Where a function is served: what a caller needs to call it. */
export interface FunctionRoute {
  /** The queue its workers consume, such as `queue_a`. */
  queue: string;
  /**
   * The broker user its workers run as: the only sender (besides the
   * caller's own user) whose replies and pongs count for the function.
   */
  user: string;
  /**
   * Served by Celery workers: set to `celery`, with {@linkcode celeryName}.
   * @default {"native"}
   */
  protocol?: FunctionProtocol;
  /** The Celery task name its Celery workers register, such as `tasks.task_c`. */
  celeryName?: string;
}

/** A function, checked, with every default applied. */
export interface FunctionEntry {
  name: string;
  queue: string;
  /** Its name unless the entry names another. */
  user: string;
  protocol: FunctionProtocol;
  /** Only with protocol `celery`. */
  celeryName?: string;
  /** The compose and Swarm service of its workers (`worker-<name>`, `_` as `-`, by default). */
  service: string;
  /**
   * The compose profile that starts its workers; without one they always
   * start. Tools leave such a function out unless a scenario calls it.
   */
  profile?: string;
  /** Topic patterns of the events that run it (docs/events.md), when it has any. */
  triggers?: readonly string[];
  /** The event type its result is emitted as on success, if any. */
  emits?: string;
  /** When `deno task scheduler` runs it (docs/schedules.md); registry only. */
  schedule?: Schedule;
  /**
   * Its workers' `CONCURRENCY` (and so `PREFETCH`), in every deployment;
   * without it, the worker's default (`DEFAULT_CONCURRENCY`, 64). `1` for a
   * function whose every task is CPU-bound.
   */
  concurrency?: number;
}

/** The most handlers a worker runs at once, as `CONCURRENCY` allows. */
export const MAX_CONCURRENCY = 1024;

/** The registry, read. */
export interface Registry {
  /** The file, as given. */
  file: string;
  /** Each function, in the file's order. */
  functions: Map<string, FunctionEntry>;
  /** Where each function is declared: `file:line:column`. */
  declared: Map<string, string>;
  /**
   * `events.emitters`: broker users (the dispatcher, a gateway) and the
   * topic patterns of the event types each may emit. A function's workers
   * emit only their own `emits`.
   */
  emitters: Map<string, readonly string[]>;
}

/** A function of the client's `functions` option, in full. */
export interface FunctionOption {
  queue: string;
  /** @default {the function's name} */
  user?: string;
  /** @default {"native"} */
  protocol?: FunctionProtocol;
  /** Required with `protocol: "celery"`: the Celery task name, such as `tasks.task_c`. */
  celeryName?: string;
}

/**
 * Functions as the client's `functions` option gives them: function name to
 * its queue, or to its queue, the broker user of its workers (default: the
 * function's name) and, for a function served by Celery workers, `protocol:
 * "celery"` and its Celery task name.
 */
export type FunctionsOption = Record<string, string | FunctionOption>;

/** Where a `functions:` mapping comes from, which decides what it may say. */
export interface ReadFunctionsOptions {
  /**
   * The registry, which the deployments are made from: its users are
   * lower_snake_case (a password file and a secret each), none of the
   * stack's, and one function's only; it may name services and profiles.
   * A configuration file's or the client's functions are not deployed.
   */
  deployed: boolean;
}

/** What is wrong with one function: at a setting, or (without `field`) with the whole entry. */
interface EntryProblem {
  field?: string;
  message: string;
}

/**
 * A setting as read: its value, or what is wrong with it (`at`: the key
 * inside the setting's own mapping, when the problem is there).
 */
type Read<T> = { value: T } | { problem: string; at?: string };

/** One setting of a function in the YAML files: how it is read and where it may appear. */
interface FunctionField {
  /** Only in the registry. */
  deployedOnly?: boolean;
  /** How the client's `functions` option spells it, when not as YAML does. */
  optionKey?: string;
  read(value: unknown, name: string, options: ReadFunctionsOptions): Read<unknown>;
}

function lowerSnake(what: string, value: unknown): Read<string> {
  return typeof value === "string" && NAME_PATTERN.test(value) ? { value } : {
    problem: `${what} ${
      show(value)
    } is not lower_snake_case: use letters, digits and _, starting with a letter`,
  };
}

function readUser(value: unknown, _name: string, options: ReadFunctionsOptions): Read<string> {
  if (!options.deployed) {
    return typeof value === "string" && USER_PATTERN.test(value) ? { value } : {
      problem: `user ${
        show(value)
      } is not a broker user name: use letters, digits, _ . @ -, at most 64`,
    };
  }
  const read = lowerSnake("user", value);
  if ("problem" in read) return read;
  if (STACK_USERS.includes(read.value)) {
    return {
      problem: `user '${read.value}' is one of the stack's own users (${
        STACK_USERS.join(", ")
      }): give the function's workers a user of their own`,
    };
  }
  return read;
}

/** Most patterns one function's triggers or one emitter's grant may list. */
export const MAX_PATTERNS = 32;

/** A list of topic patterns (`triggers`, a grant of `events.emitters`), each checked. */
function readPatterns(value: unknown, what: string): Read<string[]> {
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_PATTERNS) {
    return {
      problem:
        `${what} must list 1 to ${MAX_PATTERNS} topic patterns, such as [order.created, "order.*"], but is ${
          show(value)
        }`,
    };
  }
  for (const pattern of value) {
    const problem = topicPatternProblem(pattern);
    if (problem) return { problem: `${what}: ${problem}` };
  }
  return { value: [...new Set(value as string[])] };
}

/**
 * Every setting a function may have, by its key in the YAML files. The
 * order is the order of the messages naming them.
 */
export const FUNCTION_FIELDS: Readonly<Record<string, FunctionField>> = Object.freeze({
  queue: { read: (value) => lowerSnake("queue", value) },
  user: { read: readUser },
  protocol: {
    read: (value) =>
      FUNCTION_PROTOCOLS.includes(value as FunctionProtocol) ? { value } : {
        problem: `must be ${FUNCTION_PROTOCOLS.join(" or ")}, but is ${
          JSON.stringify(value)
        }: use celery for a function served by Celery workers, or leave it out`,
      },
  },
  celery_name: {
    optionKey: "celeryName",
    read: (value) =>
      typeof value === "string" && CELERY_NAME_PATTERN.test(value) ? { value } : {
        problem: `must be a Celery task name (dotted Python names, such as tasks.task_c), but is ${
          JSON.stringify(value)
        }`,
      },
  },
  service: {
    deployedOnly: true,
    read: (value) => {
      if (typeof value !== "string" || !SERVICE_PATTERN.test(value)) {
        return {
          problem: `service ${
            show(value)
          } is not a service name: use lower-case letters, digits and inner -, at most 63`,
        };
      }
      return STACK_SERVICES.includes(value)
        ? { problem: `service '${value}' is one of the stack's own services: use another` }
        : { value };
    },
  },
  profile: {
    deployedOnly: true,
    read: (value) =>
      typeof value === "string" && PROFILE_PATTERN.test(value) ? { value } : {
        problem: `profile ${
          show(value)
        } is not a compose profile name: use lower-case letters, digits and _ . -`,
      },
  },
  triggers: {
    deployedOnly: true,
    read: (value) => readPatterns(value, "triggers"),
  },
  emits: {
    deployedOnly: true,
    read: (value) =>
      isEventType(value) ? { value } : {
        problem: `emits ${
          show(value)
        } is not an event type: give one, words of letters, digits, _ and - separated by dots (at most ${MAX_EVENT_TYPE_CHARS}), such as order.priced`,
      },
  },
  schedule: { deployedOnly: true, read: (value) => parseSchedule(value) },
  concurrency: {
    deployedOnly: true,
    read: (value) =>
      Number.isInteger(value) && (value as number) >= 1 && (value as number) <= MAX_CONCURRENCY
        ? { value }
        : {
          problem: `concurrency ${
            show(value)
          } is not a whole number from 1 to ${MAX_CONCURRENCY}: give the tasks its workers run at once (1 for CPU-bound work), or leave it out for the default, 64`,
        },
  },
});

/** The keys a function's mapping may have in the registry, or elsewhere. */
export function functionKeys(options: ReadFunctionsOptions): string[] {
  return Object.entries(FUNCTION_FIELDS).filter(([, field]) =>
    options.deployed || !field.deployedOnly
  ).map(([key]) => key);
}

/** The compose service of a function's workers unless its entry names one. */
export function defaultServiceOf(name: string): string {
  return `worker-${name.replaceAll("_", "-")}`;
}

/**
 * The problems of the whole entry, once each setting is known to be valid
 * on its own; `spell` names a setting as the source spells it.
 */
function crossProblems(
  fields: Record<string, unknown>,
  spell: (key: string) => string,
): EntryProblem[] {
  const { protocol, celery_name: celeryName } = fields;
  if (protocol === "celery" && (fields.triggers !== undefined || fields.emits !== undefined)) {
    return [{
      field: fields.triggers !== undefined ? "triggers" : "emits",
      message:
        "is for functions served by Deno workers: a Celery worker reads no events; remove it",
    }];
  }
  if (protocol === "celery" && fields.schedule !== undefined) {
    return [{
      field: "schedule",
      message:
        "is only for a Deno function: its ticks are native requests, which Celery workers do not read; schedule the task in Celery beat, or remove schedule",
    }];
  }
  if (protocol === "celery" && celeryName === undefined) {
    return [{
      field: "celery_name",
      message:
        "is missing, and protocol celery needs it: give the Celery task name its workers register, such as tasks.task_c",
    }];
  }
  if (protocol !== "celery" && celeryName !== undefined) {
    return [{
      field: "celery_name",
      message:
        `is only for a function served by Celery workers: set protocol to celery, or remove ${
          spell("celery_name")
        }`,
    }];
  }
  return [];
}

/**
 * One function from its settings (keyed as in the YAML files): the entry
 * with every default applied, or every problem with it. Keys that are not
 * settings are left to the caller, which knows how to point at them.
 */
export function entryFrom(
  name: string,
  settings: Record<string, unknown>,
  options: ReadFunctionsOptions,
  spell: (key: string) => string = (key) => key,
): { entry?: FunctionEntry; problems: EntryProblem[] } {
  const problems: EntryProblem[] = [];
  const nameRead = lowerSnake("function name", name);
  if ("problem" in nameRead) return { problems: [{ message: nameRead.problem }] };
  if (options.deployed && name.endsWith("_test")) {
    problems.push({
      message:
        `function name '${name}' ends in _test, so functions/${name}.ts would be taken for a test: choose another name`,
    });
  }
  if (settings.queue === undefined) {
    problems.push({
      message: `has no 'queue': name the queue ${name} consumes, such as queue_a`,
    });
  }
  const fields: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(FUNCTION_FIELDS)) {
    const value = settings[key];
    if (value === undefined || (field.deployedOnly && !options.deployed)) continue;
    const read = field.read(value, name, options);
    if ("problem" in read) {
      problems.push({ field: read.at ? `${key}.${read.at}` : key, message: read.problem });
    } else fields[key] = read.value;
  }
  if (problems.length > 0) return { problems };
  if (options.deployed && settings.user === undefined && STACK_USERS.includes(name)) {
    return {
      problems: [{
        message:
          `function name '${name}' would make its workers' user the stack's own '${name}': choose another name, or set 'user'`,
      }],
    };
  }
  const cross = crossProblems(fields, spell);
  if (cross.length > 0) return { problems: cross };
  const entry: FunctionEntry = {
    name,
    queue: fields.queue as string,
    user: (fields.user as string | undefined) ?? name,
    protocol: (fields.protocol as FunctionProtocol | undefined) ?? "native",
    service: (fields.service as string | undefined) ?? defaultServiceOf(name),
  };
  if (fields.celery_name !== undefined) entry.celeryName = fields.celery_name as string;
  if (fields.profile !== undefined) entry.profile = fields.profile as string;
  if (fields.triggers !== undefined) entry.triggers = fields.triggers as string[];
  if (fields.emits !== undefined) entry.emits = fields.emits as string;
  if (fields.schedule !== undefined) entry.schedule = fields.schedule as Schedule;
  if (fields.concurrency !== undefined) entry.concurrency = fields.concurrency as number;
  return { entry, problems: [] };
}

/** What a caller needs of `entry`: its queue and user, and its protocol when it is Celery's. */
export function routeOf(entry: FunctionEntry): FunctionRoute {
  const route: FunctionRoute = { queue: entry.queue, user: entry.user };
  if (entry.protocol === "celery") {
    route.protocol = "celery";
    route.celeryName = entry.celeryName;
  }
  return route;
}

/** The problems of `entries` together: a queue (and, deployed, a user or service) used twice. */
function sharedProblems(
  entries: readonly FunctionEntry[],
  options: ReadFunctionsOptions,
): { name: string; field: string; message: string }[] {
  const problems: { name: string; field: string; message: string }[] = [];
  const unique: [keyof FunctionEntry, string][] = [["queue", "queue"]];
  if (options.deployed) unique.push(["user", "broker user"], ["service", "service"]);
  for (const [key, what] of unique) {
    const owner = new Map<string, string>();
    for (const entry of entries) {
      const value = String(entry[key]);
      const other = owner.get(value);
      if (other === undefined) {
        owner.set(value, entry.name);
        continue;
      }
      problems.push({
        name: entry.name,
        field: key,
        message:
          `'${value}' is already the ${what} of ${other}: each function needs its own ${what}`,
      });
    }
  }
  return problems;
}

/**
 * Reads the `functions:` mapping at `path` of a YAML document, reporting
 * every problem to `check` at its line and column; returns the functions
 * that have none, in the file's order.
 */
export function readFunctionsSection(
  check: YamlChecker,
  value: unknown,
  path: YamlPath,
  options: ReadFunctionsOptions,
): Map<string, FunctionEntry> {
  const functions = new Map<string, FunctionEntry>();
  if (!isObject(value)) {
    check.report(path, `must map each function to its queue, but is ${show(value)}`);
    return functions;
  }
  const keys = functionKeys(options);
  for (const [name, settings] of Object.entries(value)) {
    const at = [...path, name];
    if (!NAME_PATTERN.test(name)) {
      check.report(at, lowerSnakeProblem("function name", name), true);
      continue;
    }
    if (!check.mapping(settings, at, keys)) continue;
    const known = Object.fromEntries(
      Object.entries(settings).filter(([key]) => keys.includes(key)),
    );
    const { entry, problems } = entryFrom(name, known, options);
    for (const problem of problems) {
      check.report(problem.field ? [...at, ...problem.field.split(".")] : at, problem.message);
    }
    if (entry) functions.set(name, entry);
  }
  for (const problem of sharedProblems([...functions.values()], options)) {
    check.report([...path, problem.name, problem.field], problem.message);
    functions.delete(problem.name);
  }
  return functions;
}

function lowerSnakeProblem(what: string, value: string): string {
  return (lowerSnake(what, value) as { problem: string }).problem;
}

/** Checks the text of a registry; `file` is only used in messages and `declared`. */
export function parseRegistry(text: string, file: string): Registry {
  const { root, check } = YamlChecker.parse(text, file);
  if (!check.mapping(root, [], ["functions", "events"])) throw ConfigError.of(file, check.problems);
  const functions = readFunctionsSection(check, root.functions, ["functions"], { deployed: true });
  const emitters = readEventsSection(check, root.events, functions);
  check.throwIfAny(file);
  const declared = new Map<string, string>();
  for (const name of functions.keys()) {
    const { line, column } = check.position(["functions", name], true);
    declared.set(name, `${file}:${line}:${column}`);
  }
  return { file, functions, declared, emitters };
}

/**
 * The registry's `events:` section: `emitters`, each broker user that may
 * emit events besides the functions (which emit their `emits`) and the
 * topic patterns of what it may emit. A function's own user is not one:
 * what it emits is its `emits`.
 */
function readEventsSection(
  check: YamlChecker,
  value: unknown,
  functions: Map<string, FunctionEntry>,
): Map<string, readonly string[]> {
  const emitters = new Map<string, readonly string[]>();
  if (value === undefined) return emitters;
  if (!check.mapping(value, ["events"], ["emitters"])) return emitters;
  const grants = value.emitters;
  if (grants === undefined) return emitters;
  if (!isObject(grants)) {
    check.report(
      ["events", "emitters"],
      `must map each broker user to the event types it may emit, but is ${show(grants)}`,
    );
    return emitters;
  }
  const functionUsers = new Set([...functions.values()].map((entry) => entry.user));
  for (const [user, patterns] of Object.entries(grants)) {
    const at = ["events", "emitters", user];
    if (!NAME_PATTERN.test(user)) {
      check.report(at, lowerSnakeProblem("emitter", user), true);
      continue;
    }
    if (functionUsers.has(user)) {
      check.report(
        at,
        `'${user}' is a function's broker user: a function emits only its 'emits', so set that instead`,
        true,
      );
      continue;
    }
    const read = readPatterns(patterns, "an emitter's grant");
    if ("problem" in read) check.report(at, read.problem);
    else emitters.set(user, read.value);
  }
  return emitters;
}

/** Reads and checks the registry at `file`; a `ConfigError` says what is wrong and where. */
export async function loadRegistry(file: string = DEFAULT_REGISTRY): Promise<Registry> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? `it does not exist: give the path of your function registry (${DEFAULT_REGISTRY} in this project)`
      : `it cannot be read: ${(error as Error).message}`;
    throw new ConfigError(`Cannot read the function registry ${file} as ${reason}`, {
      file,
      cause: error,
    });
  }
  return parseRegistry(text, file);
}

/**
 * The routes of a `functions` option, checked by the same rules as the
 * files. Throws a {@linkcode ConfigError} naming every setting to fix.
 */
export function routesFrom(option: FunctionsOption): Map<string, FunctionRoute> {
  const options = { deployed: false };
  const entries: FunctionEntry[] = [];
  const lines: string[] = [];
  const spell = (field: string) => FUNCTION_FIELDS[field]?.optionKey ?? field;
  for (const [name, value] of Object.entries(option)) {
    const given = (typeof value === "string" ? { queue: value } : value) as unknown as
      | Record<string, unknown>
      | undefined;
    const settings: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(FUNCTION_FIELDS)) {
      if (!field.deployedOnly) settings[key] = given?.[spell(key)];
    }
    const { entry, problems } = entryFrom(name, settings, options, spell);
    for (const problem of problems) {
      const where = problem.field
        ? `functions.${name}.${spell(problem.field)}`
        : `functions.${name}`;
      lines.push(`${where}: ${problem.message}`);
    }
    if (entry) entries.push(entry);
  }
  for (const problem of sharedProblems(entries, options)) {
    lines.push(`functions.${problem.name}.${spell(problem.field)}: ${problem.message}`);
  }
  if (lines.length > 0) {
    const count = `${lines.length} problem${lines.length === 1 ? "" : "s"}`;
    throw new ConfigError(
      `Cannot use the 'functions' option as it has ${count}:\n${lines.join("\n")}`,
    );
  }
  return new Map(entries.map((entry) => [entry.name, routeOf(entry)]));
}
