/**
 * A worker's settings, read from environment variables so that one image
 * serves every deployment. Each bad value fails at start with the variable,
 * its value and what to set instead.
 *
 * @module
 */

import { LOG_LEVELS, type LogFormat, type LogLevel } from "../../core/log.ts";
import { DEFAULT_MAX_MESSAGE_BYTES } from "../../core/contract/mod.ts";
import { BROKER_ENV_VARS } from "../../core/broker/mod.ts";
import { parseWholeNumber, wholeNumberRange } from "../../core/whole_number.ts";
import { DEFAULT_DELIVERY_LIMIT } from "./start_worker.ts";
import { DEFAULT_MAX_ETA_MS } from "./read_request.ts";

/**
 * Every variable a worker reads, the broker's (read by `resolveBrokerTarget`)
 * and its own; its container may read no others.
 */
export const WORKER_ENV_VARS = [
  ...BROKER_ENV_VARS,
  "QUEUE",
  "CONCURRENCY",
  "PREFETCH",
  "QUEUE_TYPE",
  "DELIVERY_LIMIT",
  "ALLOWED_SENDERS",
  "MAX_MESSAGE_BYTES",
  "SHUTDOWN_GRACE_MS",
  "WORKER_ID",
  "LOG_LEVEL",
  "LOG_FORMAT",
  "METRICS_PORT",
  "TASK_EVENTS",
  "MAX_ETA_MS",
] as const;

/** Names of the variables in {@linkcode WORKER_ENV_VARS}. */
export type WorkerEnvVar = typeof WORKER_ENV_VARS[number];

/** The port of `/healthz` and `/metrics` when `METRICS_PORT` is not set. */
export const DEFAULT_METRICS_PORT = 9464;

/** The largest `MAX_MESSAGE_BYTES`: a worker holds up to PREFETCH requests of this size. */
export const MAX_MESSAGE_BYTES_LIMIT = 64 * 1024 * 1024;

/** The largest `MAX_ETA_MS`: a year. */
export const MAX_ETA_MS_LIMIT = 365 * 24 * 3_600_000;

/** The variables that name a file, and the one path the worker image lets each read. */
export const WORKER_IMAGE_FILES = {
  AMQP_URL_FILE: "/run/secrets/amqp_url",
  AMQP_PASSWORD_FILE: "/run/secrets/amqp_password",
  AMQP_CA_FILE: "/run/secrets/amqp_ca.pem",
  AMQP_CERT_FILE: "/run/secrets/amqp_cert.pem",
  AMQP_KEY_FILE: "/run/secrets/amqp_key.pem",
} as const;

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
  const concurrency = wholeNumber(env, "CONCURRENCY", 1, 1, 1024);
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
  };
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
