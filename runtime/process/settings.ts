/**
 * What a worker process is told: the function to run (its one argument),
 * and its settings, read from environment variables so that one image
 * serves every deployment. Each bad value fails at start with the variable,
 * its value and what to set instead.
 *
 * @module
 */

import { LOG_LEVELS, type LogFormat, type LogLevel } from "../../core/log.ts";
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  isEventType,
  NAME_PATTERN,
  topicPatternProblem,
} from "../../core/contract/mod.ts";
import { parseWholeNumber, wholeNumberRange } from "../../core/whole_number.ts";
import {
  DEFAULT_CONCURRENCY,
  DEFAULT_DELIVERY_LIMIT,
  DEFAULT_MAX_ETA_MS,
  DEFAULT_METRICS_PORT,
  type WorkerEnvVar,
} from "../defaults.ts";

/** The largest `MAX_MESSAGE_BYTES`: a worker holds up to PREFETCH requests of this size. */
export const MAX_MESSAGE_BYTES_LIMIT = 64 * 1024 * 1024;

/** The largest `MAX_ETA_MS`: a year. */
export const MAX_ETA_MS_LIMIT = 365 * 24 * 3_600_000;

/** Settings of one worker process, besides its broker's (see `resolveBrokerTarget`). */
export interface WorkerSettings {
  queue: string | undefined;
  concurrency: number;
  prefetch: number;
  queueType: "classic" | "quorum";
  /** Deliveries of one request, never settled, before it is dead-lettered. */
  deliveryLimit: number;
  /** Broker users whose requests run, when set; else the function's own list. */
  allowedSenders: string[] | undefined;
  maxMessageBytes: number;
  graceMs: number;
  workerId: string | undefined;
  logLevel: LogLevel;
  logFormat: LogFormat;
  /** Port of `/healthz` and `/metrics`; 0 serves neither. */
  metricsPort: number;
  /** Publish task events to the events exchange. */
  events: boolean;
  /** The longest wait a Celery eta may ask for, in ms; a later one is refused. */
  maxEtaMs: number;
  /** The function and queue the deployment is for, where it says (see {@linkcode checkDeployment}). */
  deployment: { name?: string; queue?: string };
  /**
   * The function's triggers and emits when the environment gives them
   * (`FUNCTION_TRIGGERS`, `FUNCTION_EMITS`: the deployments made from the
   * registry set them); else `undefined`, and a host worker reads the registry.
   */
  subscriptions?: { triggers: string[]; emits?: string };
}

/** A function module that is not the one its deployment runs: the worker exits 2. */
export class DeploymentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DeploymentError";
  }
}

/**
 * Checks the loaded function against what its deployment says it is: the
 * deployments made from functions/registry.yaml set `FUNCTION_NAME` and
 * `FUNCTION_QUEUE`, so a module that defines another name or queue than
 * its registry entry (a copy left unchanged, an image built from the wrong
 * file) stops the worker before it consumes anything. Unset, nothing is
 * checked.
 */
export function checkDeployment(
  info: { name: string; queue: string },
  deployment: WorkerSettings["deployment"],
): void {
  const wrong: string[] = [];
  if (deployment.name !== undefined && deployment.name !== info.name) {
    wrong.push(`name '${info.name}', not '${deployment.name}' (FUNCTION_NAME)`);
  }
  if (deployment.queue !== undefined && deployment.queue !== info.queue) {
    wrong.push(`queue '${info.queue}', not '${deployment.queue}' (FUNCTION_QUEUE)`);
  }
  if (wrong.length === 0) return;
  throw new DeploymentError(
    `Cannot serve this deployment as its function module defines ${
      wrong.join(" and ")
    }: make the module and its entry in functions/registry.yaml agree, then run 'deno task manifests' and rebuild the image`,
  );
}

function deployedName(
  env: (name: WorkerEnvVar) => string | undefined,
  name: "FUNCTION_NAME" | "FUNCTION_QUEUE",
): string | undefined {
  const text = env(name);
  if (text === undefined || text === "") return undefined;
  if (!NAME_PATTERN.test(text)) {
    throw new RangeError(
      `Cannot start the worker as ${name} is '${
        text.slice(0, 64)
      }': set it to a lower_snake_case name, as functions/registry.yaml has it, or leave it unset`,
    );
  }
  return text;
}

function wholeNumber(
  env: (name: WorkerEnvVar) => string | undefined,
  name: WorkerEnvVar,
  fallback: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const text = env(name);
  if (text === undefined || text === "") return fallback;
  const value = parseWholeNumber(text, min, max);
  if (value === undefined) {
    throw new RangeError(
      `Cannot start the worker as ${name} is '${text}': set it to a whole number ${
        wholeNumberRange(min, max)
      }`,
    );
  }
  return value;
}

function oneOf<T extends string>(
  env: (name: WorkerEnvVar) => string | undefined,
  name: WorkerEnvVar,
  allowed: readonly T[],
  fallback: T,
): T {
  const text = env(name);
  if (text === undefined || text === "") return fallback;
  if (!allowed.includes(text as T)) {
    throw new RangeError(
      `Cannot start the worker as ${name} is '${text}': set it to one of ${allowed.join(", ")}`,
    );
  }
  return text as T;
}

/**
 * Reads and checks the settings, all but the broker's; throws a
 * `RangeError` naming the bad variable.
 */
export function readWorkerSettings(
  env: (name: WorkerEnvVar) => string | undefined,
): WorkerSettings {
  const concurrency = wholeNumber(env, "CONCURRENCY", DEFAULT_CONCURRENCY, 1, 1024);
  const prefetch = wholeNumber(env, "PREFETCH", concurrency, 1, 65535);
  if (prefetch < concurrency) {
    throw new RangeError(
      `Cannot start the worker as PREFETCH (${prefetch}) is below CONCURRENCY (${concurrency}): raise PREFETCH or leave it unset`,
    );
  }
  const queue = env("QUEUE") || undefined;
  return {
    queue,
    concurrency,
    prefetch,
    queueType: oneOf(env, "QUEUE_TYPE", ["classic", "quorum"] as const, "quorum"),
    deliveryLimit: wholeNumber(env, "DELIVERY_LIMIT", DEFAULT_DELIVERY_LIMIT, 1, 1000),
    allowedSenders: senderList(env("ALLOWED_SENDERS")),
    maxMessageBytes: wholeNumber(
      env,
      "MAX_MESSAGE_BYTES",
      DEFAULT_MAX_MESSAGE_BYTES,
      1024,
      MAX_MESSAGE_BYTES_LIMIT,
    ),
    graceMs: wholeNumber(env, "SHUTDOWN_GRACE_MS", 10_000, 0, 3_600_000),
    workerId: workerIdOf(env("WORKER_ID")),
    logLevel: oneOf(env, "LOG_LEVEL", LOG_LEVELS, "info"),
    logFormat: oneOf(env, "LOG_FORMAT", ["json", "text"] as const, "json"),
    metricsPort: wholeNumber(env, "METRICS_PORT", DEFAULT_METRICS_PORT, 0, 65535),
    events: oneOf(env, "TASK_EVENTS", ["true", "false"] as const, "false") === "true",
    maxEtaMs: wholeNumber(env, "MAX_ETA_MS", DEFAULT_MAX_ETA_MS, 0, MAX_ETA_MS_LIMIT),
    deployment: {
      name: deployedName(env, "FUNCTION_NAME"),
      queue: deployedName(env, "FUNCTION_QUEUE"),
    },
    ...subscriptionsOf(env),
  };
}

function subscriptionsOf(
  env: (name: WorkerEnvVar) => string | undefined,
): Pick<WorkerSettings, "subscriptions"> {
  const triggersText = env("FUNCTION_TRIGGERS") || undefined;
  const emits = env("FUNCTION_EMITS") || undefined;
  if (triggersText === undefined && emits === undefined) return {};
  const triggers = (triggersText ?? "").split(",").map((p) => p.trim()).filter((p) => p !== "");
  for (const pattern of triggers) {
    const problem = topicPatternProblem(pattern);
    if (problem) {
      throw new RangeError(
        `Cannot start the worker as FUNCTION_TRIGGERS has ${problem}; list patterns separated by commas`,
      );
    }
  }
  if (emits !== undefined && emits !== "" && !isEventType(emits)) {
    throw new RangeError(
      `Cannot start the worker as FUNCTION_EMITS is '${
        String(emits).slice(0, 64)
      }': set it to one event type, such as order.priced, or leave it unset`,
    );
  }
  return { subscriptions: { triggers, ...(emits && { emits }) } };
}

function senderList(text: string | undefined): string[] | undefined {
  if (text === undefined || text.trim() === "") return undefined;
  const users = text.split(",").map((user) => user.trim()).filter((user) => user !== "");
  for (const user of users) {
    if (user !== "*" && !/^[\w.@-]{1,64}$/.test(user)) {
      throw new RangeError(
        `Cannot start the worker as ALLOWED_SENDERS names '${
          user.slice(0, 64)
        }', which is not a broker user name: list user names separated by commas, or * for anyone`,
      );
    }
  }
  return users;
}

function workerIdOf(text: string | undefined): string | undefined {
  if (text === undefined || text === "") return undefined;
  if (!/^[\w@.:-]{1,128}$/.test(text)) {
    throw new RangeError(
      `Cannot start the worker as WORKER_ID is '${
        text.slice(0, 64)
      }': use at most 128 letters, digits and _ @ . : -`,
    );
  }
  return text;
}

/**
 * Which module to run: a function name means functions/<name>.ts; a path is
 * taken from the project's folder (the one holding functions/) unless it is
 * absolute.
 */
export function functionModule(argument: string, functionsDir: URL): URL {
  if (NAME_PATTERN.test(argument)) return new URL(`${argument}.ts`, functionsDir);
  if (/\.(ts|js|mts|mjs)$/.test(argument)) return new URL(argument, new URL("../", functionsDir));
  throw new TypeError(
    `Cannot run '${argument}': give a function name, such as task_a, or the path of its module`,
  );
}

/** Why `module` cannot be run, naming the functions there are; `undefined` when it is a file. */
export async function moduleMissing(module: URL, functionsDir: URL): Promise<string | undefined> {
  try {
    if ((await Deno.stat(module)).isFile) return undefined;
  } catch {
    // Reported below.
  }
  const available = [];
  try {
    for await (const entry of Deno.readDir(functionsDir)) {
      if (entry.isFile && entry.name.endsWith(".ts") && !entry.name.endsWith("_test.ts")) {
        available.push(entry.name.slice(0, -3));
      }
    }
  } catch {
    // Nothing to suggest.
  }
  const where = module.pathname.startsWith(functionsDir.pathname)
    ? `functions/${module.pathname.slice(functionsDir.pathname.length)}`
    : module.pathname;
  const name = where.replace(/^.*\//, "").replace(/\.[a-z]+$/, "");
  return `Cannot run function '${name}' as ${where} does not exist${
    available.length ? `: use one of ${available.sort().join(", ")}` : ""
  }`;
}
