/**
 * What a deployment of the worker must agree on with it: the variables it
 * reads, the files its image lets it read them from, the port of its health
 * and metrics, and the limits of the queues it declares. The Kubernetes
 * manifests (`ops/kubernetes/`) and the tests of the image and the compose
 * files take them from here, never from the worker's internals.
 *
 * @module
 */

/** Every variable a worker reads; its container may read no others. */
export const WORKER_ENV_VARS = [
  "AMQP_URL",
  "AMQP_URL_FILE",
  "AMQP_PASSWORD_FILE",
  "AMQP_CA_FILE",
  "AMQP_CERT_FILE",
  "AMQP_KEY_FILE",
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
  "FUNCTION_NAME",
  "FUNCTION_QUEUE",
  "FUNCTION_TRIGGERS",
  "FUNCTION_EMITS",
] as const;

/** Names of the variables in {@linkcode WORKER_ENV_VARS}. */
export type WorkerEnvVar = typeof WORKER_ENV_VARS[number];

/** The variables that name a file, and the one path the worker image lets each read. */
export const WORKER_IMAGE_FILES = {
  AMQP_URL_FILE: "/run/secrets/amqp_url",
  AMQP_PASSWORD_FILE: "/run/secrets/amqp_password",
  AMQP_CA_FILE: "/run/secrets/amqp_ca.pem",
  AMQP_CERT_FILE: "/run/secrets/amqp_cert.pem",
  AMQP_KEY_FILE: "/run/secrets/amqp_key.pem",
} as const;

/** The port of `/healthz` and `/metrics` when `METRICS_PORT` is not set. */
export const DEFAULT_METRICS_PORT = 9464;

/**
 * Handlers a worker runs at once unless `CONCURRENCY` says otherwise, and
 * so (unless `PREFETCH` does) the deliveries it holds: enough that a worker
 * started with no settings serves short tasks at most of the rate a tuned
 * one does (docs/performance.md, "The default worker"). A handler that holds
 * the sandbox's thread makes the worker step down to one task at a time
 * (`runtime/worker/step_down.ts`); `CONCURRENCY=1` is the choice for a
 * function whose every task is CPU-bound.
 */
export const DEFAULT_CONCURRENCY = 64;

/** How many deliveries of one request a quorum queue allows unless `DELIVERY_LIMIT` says otherwise. */
export const DEFAULT_DELIVERY_LIMIT = 5;

/** The delivery limit of a dead-letter queue: as good as none, on RabbitMQ 3 and 4 alike. */
export const DEAD_LETTER_VIEWS = 2 ** 31;

/** The longest wait an eta may ask for unless a worker says otherwise (`MAX_ETA_MS`): 7 days. */
export const DEFAULT_MAX_ETA_MS = 7 * 24 * 3_600_000;
