/**
 * The generated blocks of compose.yaml, compose.cluster.yaml and stack.yaml,
 * made from the registry's functions: each worker service, its password
 * secret and secrets-init's list of users. The rest of those files (the
 * anchors these services merge, the broker, the comments) is written by
 * hand; {@linkcode ../manifests/marked_blocks.ts} puts the blocks in place.
 *
 * Every value here was checked by the registry's parser (lower_snake_case
 * names, service names that are DNS labels), so it can be written as a
 * plain YAML scalar; the few words YAML 1.1 (Compose v1) reads as booleans
 * are quoted.
 *
 * @module
 */

import type { FunctionEntry, Registry } from "../../core/registry.ts";
import { describeSchedule } from "../../core/schedule.ts";
import { SCHEDULER_USER } from "../../core/contract/users.ts";

/** The broker nodes of compose.cluster.yaml, in order. */
export const CLUSTER_NODES = ["rabbitmq", "rabbitmq-2", "rabbitmq-3"] as const;

/** The compose and Swarm secret of a worker user's password. */
export function passwordSecretOf(user: string): string {
  return `${user}_password`;
}

/** The file secrets-init writes a user's password to, under `$SECRETS_DIR`. */
export function passwordFileOf(user: string): string {
  return `${user}.password`;
}

/**
 * The AMQP_URL of a function's workers on the cluster: every node, starting
 * from the `index`-th (the functions' order), so that the workers spread
 * over the nodes and one node's loss takes only some of them along.
 */
export function clusterUrlOf(user: string, index: number): string {
  const nodes = CLUSTER_NODES.map((_, i) => CLUSTER_NODES[(index + i) % CLUSTER_NODES.length]);
  return nodes.map((node) => `amqp://${user}@${node}:5672`).join(",");
}

/** `value` as a YAML scalar that reads back as this string in YAML 1.1 and 1.2. */
function scalar(value: string): string {
  return /^(y|n|yes|no|on|off|true|false|null|~)$/i.test(value) ? JSON.stringify(value) : value;
}

function native(entries: readonly FunctionEntry[]): FunctionEntry[] {
  return entries.filter((entry) => entry.protocol === "native");
}

/** The worker's `CONCURRENCY` when the registry sets one; else the worker's default holds. */
function concurrencyLines(entry: FunctionEntry): string[] {
  return entry.concurrency === undefined ? [] : [`    CONCURRENCY: "${entry.concurrency}"`];
}

function profileLines(entry: FunctionEntry): string[] {
  return entry.profile === undefined ? [] : [`  profiles: [${scalar(entry.profile)}]`];
}

function secretMount(entry: FunctionEntry): string[] {
  return [
    "  secrets:",
    `    - source: ${passwordSecretOf(entry.user)}`,
    "      target: amqp_password",
  ];
}

function composeWorker(entry: FunctionEntry): string[] {
  return [
    `${entry.service}:`,
    "  <<: *worker",
    ...profileLines(entry),
    "  build:",
    "    context: .",
    "    dockerfile: Dockerfile.worker",
    "    args:",
    `      FUNCTION: ${scalar(entry.name)}`,
    "      DENO_IMAGE: ${DENO_IMAGE:-denoland/deno:distroless-2.9.6}",
    "  environment:",
    "    <<: *worker-env",
    `    AMQP_URL: amqp://${entry.user}@rabbitmq:5672`,
    `    OTEL_SERVICE_NAME: ${scalar(entry.name)}`,
    `    FUNCTION_NAME: ${scalar(entry.name)}`,
    `    FUNCTION_QUEUE: ${scalar(entry.queue)}`,
    ...eventVariables(entry, "    "),
    ...concurrencyLines(entry),
    ...secretMount(entry),
  ];
}

/** A worker's FUNCTION_TRIGGERS and FUNCTION_EMITS, for a function that has them. */
function eventVariables(entry: FunctionEntry, indent: string): string[] {
  return [
    ...(entry.triggers?.length
      ? [`${indent}FUNCTION_TRIGGERS: ${JSON.stringify(entry.triggers.join(","))}`]
      : []),
    ...(entry.emits ? [`${indent}FUNCTION_EMITS: ${JSON.stringify(entry.emits)}`] : []),
  ];
}

/**
 * secrets-init's flags for events (docs/events.md): each function's
 * triggers and emits, each emitter's grant. compose.yaml's secrets-init gets
 * them from `deno task manifests`; a Swarm's secrets are made with the same.
 */
export function eventFlagsOf(
  entries: readonly FunctionEntry[],
  emitters: ReadonlyMap<string, readonly string[]>,
): string[] {
  const flag = (name: string, user: string, list: readonly string[]) =>
    `--${name}=${user}=${list.join(",")}`;
  return [
    ...native(entries).flatMap((entry) => [
      ...(entry.triggers?.length ? [flag("triggers", entry.user, entry.triggers)] : []),
      ...(entry.emits ? [flag("emits", entry.user, [entry.emits])] : []),
    ]),
    ...[...emitters].map(([user, patterns]) => flag("emitter", user, patterns)),
  ];
}

function composeCeleryWorker(entry: FunctionEntry): string[] {
  return [
    `${entry.service}:`,
    "  <<: *celery-worker",
    ...profileLines(entry),
    "  environment:",
    "    <<: *celery-worker-env",
    // The trailing / is the default vhost, as kombu spells it.
    `    AMQP_URL: amqp://${entry.user}@rabbitmq:5672//`,
    `    CELERY_QUEUE: ${scalar(entry.queue)}`,
    ...secretMount(entry),
  ];
}

function secretFiles(entries: readonly FunctionEntry[]): string[] {
  return entries.flatMap((entry) => [
    `${passwordSecretOf(entry.user)}:`,
    `  file: \${SECRETS_DIR:-./secrets}/${passwordFileOf(entry.user)}`,
  ]);
}

/** The scheduler's replicas in compose.yaml and compose.cluster.yaml: one fires, one waits. */
export const SCHEDULER_SERVICES = ["scheduler-1", "scheduler-2"] as const;

/** What the schedulers fire, as a comment line of their block. */
function firesLine(entries: readonly FunctionEntry[]): string {
  const scheduled = entries.filter((entry) => entry.schedule !== undefined);
  return `# Fires: ${
    scheduled.length === 0
      ? "nothing yet (no function of the registry has a schedule)"
      : scheduled.map((entry) => `${entry.name}, ${describeSchedule(entry.schedule!)}`).join("; ")
  }`;
}

/**
 * compose.yaml's blocks: `users` (secrets-init's flags: each function's
 * user, the event grants, and the queues the scheduler may fire into),
 * `workers`, `schedulers` and `secrets`.
 */
export function composeBlocks(
  entries: readonly FunctionEntry[],
  registry?: Pick<Registry, "emitters">,
): Record<string, string[]> {
  return {
    users: [
      ...entries.map((entry) =>
        `- --${
          entry.protocol === "celery" ? "celery-function" : "function"
        }=${entry.user}=${entry.queue}`
      ),
      // Quoted: a pattern's # would start a YAML comment after a space.
      ...eventFlagsOf(entries, registry?.emitters ?? new Map()).map((flag) =>
        `- ${JSON.stringify(flag)}`
      ),
      ...entries.filter((entry) => entry.schedule !== undefined).map((entry) =>
        `- --scheduled=${entry.queue}`
      ),
    ],
    workers: entries.flatMap((entry, i) => [
      ...(i === 0 ? [] : [""]),
      ...(entry.protocol === "celery" ? composeCeleryWorker(entry) : composeWorker(entry)),
    ]),
    schedulers: [
      firesLine(entries),
      ...SCHEDULER_SERVICES.flatMap((service, i) => [
        ...(i === 0 ? [] : [""]),
        `${service}:`,
        "  <<: *scheduler",
        `  hostname: ${service}`,
      ]),
    ],
    secrets: secretFiles(entries),
  };
}

/**
 * compose.cluster.yaml's blocks: `workers`, each Deno worker on every node,
 * and `schedulers`, each replica on every node, starting from another.
 */
export function clusterBlocks(entries: readonly FunctionEntry[]): Record<string, string[]> {
  return {
    workers: native(entries).flatMap((entry, i) => [
      ...(i === 0 ? [] : [""]),
      `${entry.service}:`,
      "  <<: *cluster-worker",
      "  environment:",
      `    AMQP_URL: ${clusterUrlOf(entry.user, i)}`,
    ]),
    schedulers: SCHEDULER_SERVICES.flatMap((service, i) => [
      ...(i === 0 ? [] : [""]),
      `${service}:`,
      "  <<: *cluster-scheduler",
      "  environment:",
      `    AMQP_URL: ${clusterUrlOf(SCHEDULER_USER, i)}`,
    ]),
  };
}

/** stack.yaml's blocks: `workers` (the Deno workers), `schedulers` and the workers' `secrets`. */
export function stackBlocks(entries: readonly FunctionEntry[]): Record<string, string[]> {
  const workers = native(entries);
  return {
    schedulers: [
      firesLine(entries),
      "scheduler:",
      "  <<: *scheduler",
      `  image: \${IMAGE_PREFIX:-task-system}/scheduler:\${IMAGE_TAG:?set IMAGE_TAG to the tag of the images}`,
    ],
    workers: workers.flatMap((entry, i) => [
      ...(i === 0 ? [] : [""]),
      `${entry.service}:`,
      "  <<: *worker",
      `  image: \${IMAGE_PREFIX:-task-system}/worker-${entry.name}:\${IMAGE_TAG:?set IMAGE_TAG to the tag of the worker images}`,
      "  environment:",
      "    <<: *worker-env",
      `    AMQP_URL: amqp://${entry.user}@rabbitmq:5672`,
      `    FUNCTION_NAME: ${scalar(entry.name)}`,
      `    FUNCTION_QUEUE: ${scalar(entry.queue)}`,
      ...eventVariables(entry, "    "),
      ...concurrencyLines(entry),
      "  deploy: *worker-deploy",
      "  secrets:",
      "    - <<: *worker-secret",
      `      source: ${passwordSecretOf(entry.user)}`,
    ]),
    secrets: secretFiles(workers),
  };
}
