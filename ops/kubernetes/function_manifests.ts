/**
 * The Kubernetes manifests of one function, made from its name and queue:
 * its broker user, permissions and queues (RabbitMQ messaging topology
 * operator), its worker `Deployment`, the KEDA `ScaledObject` that scales the
 * worker with its queue down to zero, and the `NetworkPolicy` that fences it.
 * Adding a function to the Kubernetes base is one call to
 * {@linkcode functionManifestFiles}; `deno task manifests` writes the files
 * of every Deno function of functions/registry.yaml under
 * `ops/kubernetes/functions/` ({@linkcode functionsDirectoryFiles}).
 *
 * @module
 */

import { stringify } from "yaml";
import type { IScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import {
  dispatcherPermissions,
  type FunctionQueue,
  NAME_PATTERN,
  topicPermissionsOf,
  workerPermissions,
} from "../rabbitmq/definitions.ts";
import { queueArguments } from "../../core/broker/mod.ts";
import { deadLetterQueueOf } from "../../core/contract/names.ts";
import { DISPATCHER_USER, KEDA_USER } from "../../core/contract/users.ts";
import {
  DEAD_LETTER_VIEWS,
  DEFAULT_DELIVERY_LIMIT,
  DEFAULT_METRICS_PORT,
} from "../../runtime/defaults.ts";
import {
  RABBITMQ_API_VERSION,
  type RabbitmqPermission,
  type RabbitmqQueue,
  type RabbitmqTopicPermission,
} from "./rabbitmq_resources.ts";
import {
  AMQP_PORT,
  brokerOnlyPolicy,
  brokerUserManifests,
  kubernetesName,
  labelsOf,
  type Manifest,
  RABBITMQ_CLUSTER,
  workloadDeployment,
} from "./workload.ts";

/** The namespace of the base (ops/kubernetes/kustomization.yaml). */
export const NAMESPACE = "task-system";
/** Deliveries of one request, never settled, before it is dead-lettered. */
export const DELIVERY_LIMIT = DEFAULT_DELIVERY_LIMIT;
/** How long a stopping worker lets running tasks finish. */
export const SHUTDOWN_GRACE_MS = 10_000;
/** The KEDA `TriggerAuthentication` of the `keda` broker user (ops/kubernetes/keda.yaml). */
export const KEDA_AUTHENTICATION = "rabbitmq-keda";
/** Ready messages per worker replica that KEDA aims at. */
export const MESSAGES_PER_REPLICA = 20;
/** Most worker replicas of one function. */
export const MAX_REPLICAS = 10;
/**
 * Seconds without ready messages before KEDA scales a worker to zero. KEDA
 * counts ready messages only, not those being worked on.
 */
export const COOLDOWN_SECONDS = 300;
/**
 * The tag of the worker images the base deploys: a fixed one, so that a
 * restarted pod runs the image its Deployment was rolled out with. Build and
 * push the images under it, or point the base at a release of yours with
 * kustomize `images:` (docs/kubernetes.md).
 */
export const WORKER_IMAGE_TAG = "1.0.0";
/**
 * The namespace of the Prometheus that scrapes the workers (9464) and the
 * broker (15692): the only pods that may reach those ports.
 */
export const MONITORING_NAMESPACE = "monitoring";
/** The namespace KEDA runs in (its Helm chart's default). */
export const KEDA_NAMESPACE = "keda";
/** Labels of KEDA's operator pods, which count each queue's messages over AMQP. */
export const KEDA_OPERATOR_LABELS = { "app.kubernetes.io/name": "keda-operator" } as const;
/** The namespace of the RabbitMQ cluster and messaging topology operators. */
export const RABBITMQ_OPERATORS_NAMESPACE = "rabbitmq-system";
/** Labels both RabbitMQ operators' pods carry; they use the broker's management API. */
export const RABBITMQ_OPERATOR_LABELS = {
  "app.kubernetes.io/component": "rabbitmq-operator",
} as const;
/**
 * `app.kubernetes.io/component` of the pods that may open AMQP connections
 * to the broker in the base's namespace: the functions' workers, the
 * scheduler's and the gateway's replicas, and tools (deno task dispatch, load, status, dlq)
 * that you run as pods.
 */
export const AMQP_CLIENT_COMPONENTS = ["worker", "scheduler", "gateway", "tool"] as const;
/** The RabbitMQ ports the broker's NetworkPolicy opens, each to whom needs it. */
export const RABBITMQ_PORTS = {
  amqp: AMQP_PORT,
  management: 15672,
  prometheus: 15692,
  epmd: 4369,
  distribution: 25672,
  /** Erlang distribution ports of the CLI tools (rabbitmqctl) that the operator runs in a pod. */
  cliFirst: 35672,
  cliLast: 35682,
} as const;
/** The KEDA user's Permission, made from the functions' queues ('deno task manifests'). */
export const KEDA_PERMISSION_FILE = "keda-permission.yaml";
/** The dispatcher user's Permission, made from the functions' queues ('deno task manifests'). */
export const DISPATCHER_PERMISSION_FILE = "dispatcher-permission.yaml";

/**
 * A function the base deploys: its name, queue and the broker user of its
 * workers (its name unless the registry names another).
 */
export interface DeployedFunction extends FunctionQueue {
  /** @default {the function's name} */
  user?: string;
  /** Topic patterns its queue is bound with on the events exchange (docs/events.md). */
  triggers?: readonly string[];
  /** The event type its results are emitted as. */
  emits?: string;
  /** Its workers' `CONCURRENCY`. @default {the worker's default} */
  concurrency?: number;
}

/** Options for {@linkcode functionManifests} and {@linkcode functionManifestFiles}. */
export interface FunctionManifestsOptions {
  /**
   * The namespace the base is deployed to: KEDA, which runs in its own,
   * reaches the broker by `rabbitmq.<namespace>.svc`.
   * @default {NAMESPACE}
   */
  namespace?: string;
  /** The event types the dispatcher may emit (the registry's `events.emitters`). */
  dispatcherEmits?: readonly string[];
}

/** The worker image of a function, before kustomize `images:` rewrites it. */
export function workerImageOf(name: string): string {
  return `task-system/worker-${name}:${WORKER_IMAGE_TAG}`;
}

/** Arguments of a function's dead-letter queue, as the worker declares it. */
export function deadLetterQueueArguments(): Record<string, string | number> {
  const { "x-queue-type": _, ...args } = queueArguments({
    type: "quorum",
    deliveryLimit: DEAD_LETTER_VIEWS,
  });
  return args as Record<string, string | number>;
}

/** Arguments of a function's work queue; a worker that declares it must pass the same. */
export function workQueueArguments(queue: string): Record<string, string | number> {
  // As the worker declares it (runtime/worker/consumer.ts), less the type the Queue resource names.
  const { "x-queue-type": _, ...args } = queueArguments({
    type: "quorum",
    deadLetterQueue: deadLetterQueueOf(queue),
    deliveryLimit: DELIVERY_LIMIT + 1,
  });
  return args as Record<string, string | number>;
}

function checkFunction({ name, queue, user = name }: DeployedFunction): void {
  for (const [what, value] of [["function", name], ["queue", queue], ["user", user]]) {
    if (!NAME_PATTERN.test(value)) {
      throw new TypeError(
        `Cannot make the manifests of ${what} '${value}' as its name is not lower_snake_case: use letters, digits and _`,
      );
    }
  }
  const longest = `worker-${kubernetesName(name)}`;
  if (longest.length > 63) {
    throw new RangeError(
      `Cannot make the manifests of function '${name}' as '${longest}' is longer than 63 characters: use a shorter name`,
    );
  }
  kubernetesName(queue);
  kubernetesName(user);
}

/**
 * The Kubernetes objects of one function, in the order of its files: broker
 * user, permissions and queues; worker Deployment; ScaledObject;
 * NetworkPolicy. Pure: the same function gives the same objects.
 */
export function functionManifests(
  fn: DeployedFunction,
  options: FunctionManifestsOptions = {},
): Manifest[] {
  checkFunction(fn);
  const namespace = options.namespace ?? NAMESPACE;
  const { name, queue } = fn;
  const userName = fn.user ?? name;
  const worker = `worker-${kubernetesName(name)}`;
  const { labels } = labelsOf(worker);
  const cluster = { name: RABBITMQ_CLUSTER };
  const dlq = deadLetterQueueOf(queue);
  const metricsPort = DEFAULT_METRICS_PORT;

  const brokerUser = brokerUserManifests(userName, {
    labels: labels("broker"),
    permissions: workerPermissions(queue, { triggers: fn.triggers, emits: fn.emits }),
    // Which event types it may emit and bind: as the compose stack's definitions say.
    ...(fn.triggers?.length || fn.emits
      ? { topicPermissions: topicPermissionsOf({ triggers: fn.triggers, emits: fn.emits }) }
      : {}),
  });
  const queueResource = (queueName: string, args?: Record<string, string | number>) => {
    const resource: RabbitmqQueue = {
      apiVersion: RABBITMQ_API_VERSION,
      kind: "Queue",
      metadata: { name: kubernetesName(queueName.replaceAll(".", "-")), labels: labels("broker") },
      spec: {
        name: queueName,
        vhost: "/",
        type: "quorum",
        durable: true,
        ...(args ? { arguments: args } : {}),
        // Deleting the resource leaves the queue and its messages.
        deletionPolicy: "retain",
        rabbitmqClusterReference: cluster,
      },
    };
    return resource;
  };

  const deployment = workloadDeployment({
    name: worker,
    component: "worker",
    image: workerImageOf(name),
    user: userName,
    // No replicas: the ScaledObject sets them, from 0 to MAX_REPLICAS.
    env: [
      { name: "QUEUE_TYPE", value: "quorum" },
      { name: "DELIVERY_LIMIT", value: String(DELIVERY_LIMIT) },
      { name: "METRICS_PORT", value: String(metricsPort) },
      { name: "SHUTDOWN_GRACE_MS", value: String(SHUTDOWN_GRACE_MS) },
      { name: "LOG_FORMAT", value: "json" },
      // The worker stops at start if its image holds another function.
      { name: "FUNCTION_NAME", value: name },
      { name: "FUNCTION_QUEUE", value: queue },
      ...(fn.triggers?.length ? [{ name: "FUNCTION_TRIGGERS", value: fn.triggers.join(",") }] : []),
      ...(fn.emits ? [{ name: "FUNCTION_EMITS", value: fn.emits }] : []),
      // The registry's, for every deployment alike; else the worker's default.
      ...(fn.concurrency === undefined
        ? []
        : [{ name: "CONCURRENCY", value: String(fn.concurrency) }]),
    ],
    // /healthz: 200 while consuming, 503 while connecting or draining.
    port: { name: "metrics", containerPort: metricsPort },
    resources: {
      requests: { cpu: "100m", memory: "128Mi" },
      limits: { cpu: "1", memory: "256Mi" },
    },
  });

  const scaledObject: IScaledObject = {
    apiVersion: "keda.sh/v1alpha1",
    kind: "ScaledObject",
    metadata: { name: worker, labels: labels("worker") },
    spec: {
      scaleTargetRef: { name: worker },
      minReplicaCount: 0,
      maxReplicaCount: MAX_REPLICAS,
      pollingInterval: 10,
      cooldownPeriod: COOLDOWN_SECONDS,
      // Not at once after creation either, so that a fresh deployment can be seen working.
      initialCooldownPeriod: COOLDOWN_SECONDS,
      triggers: [{
        type: "rabbitmq",
        metadata: {
          protocol: "amqp",
          host: `amqp://${RABBITMQ_CLUSTER}.${namespace}.svc:${AMQP_PORT}`,
          queueName: queue,
          mode: "QueueLength",
          value: String(MESSAGES_PER_REPLICA),
          activationValue: "0",
        },
        authenticationRef: { name: KEDA_AUTHENTICATION },
      }],
    },
  };

  // Metrics and /healthz for Prometheus only.
  const networkPolicy = brokerOnlyPolicy(worker, "worker", [{
    from: [{
      namespaceSelector: {
        matchLabels: { "kubernetes.io/metadata.name": MONITORING_NAMESPACE },
      },
    }],
    ports: [{ port: metricsPort, protocol: "TCP" }],
  }]);

  return [
    ...brokerUser,
    queueResource(queue, workQueueArguments(queue)),
    queueResource(dlq, deadLetterQueueArguments()),
    deployment,
    scaledObject,
    networkPolicy,
  ] as unknown as Manifest[];
}

const GENERATED = (what: string) =>
  `# Generated by ops/kubernetes/function_manifests.ts (${what}): do not edit.\n` +
  "# Change the generator, then run 'deno task manifests'.\n";

/** A generated file of `objects`, its header saying what made it from what. */
export function generatedFile(what: string, objects: readonly unknown[]): string {
  return GENERATED(what) + yamlDocuments(objects);
}

function yamlDocuments(objects: readonly unknown[]): string {
  return objects.map((object) => stringify(object, { lineWidth: 0, aliasDuplicateObjects: false }))
    .join("---\n");
}

/** The file that holds each kind, in a function's directory. */
const FILE_OF_KIND: Record<string, string> = {
  User: "broker.yaml",
  Permission: "broker.yaml",
  TopicPermission: "broker.yaml",
  Queue: "broker.yaml",
  Deployment: "deployment.yaml",
  ScaledObject: "scaled-object.yaml",
  NetworkPolicy: "network-policy.yaml",
};

/**
 * The files of one function's directory, `ops/kubernetes/functions/<name>/`,
 * by file name: its manifests as YAML and the `kustomization.yaml` that lists
 * them.
 */
export function functionManifestFiles(
  fn: DeployedFunction,
  options: FunctionManifestsOptions = {},
): Record<string, string> {
  const byFile = new Map<string, Manifest[]>();
  for (const object of functionManifests(fn, options)) {
    const file = FILE_OF_KIND[object.kind];
    byFile.set(file, [...byFile.get(file) ?? [], object]);
  }
  const header = GENERATED(`function ${fn.name} on queue ${fn.queue}`);
  const files: Record<string, string> = {
    "kustomization.yaml": header + stringify({
      apiVersion: "kustomize.config.k8s.io/v1beta1",
      kind: "Kustomization",
      resources: [...byFile.keys()],
    }),
  };
  for (const [file, objects] of byFile) files[file] = header + yamlDocuments(objects);
  return files;
}

/**
 * `ops/kubernetes/functions/kustomization.yaml`: every function's directory,
 * the Permissions of KEDA and of the dispatcher, and `more` files.
 */
export function functionsKustomization(
  names: readonly string[],
  more: readonly string[] = [],
): string {
  return GENERATED(REGISTRY_FUNCTIONS) + stringify({
    apiVersion: "kustomize.config.k8s.io/v1beta1",
    kind: "Kustomization",
    resources: [...[...names].sort(), KEDA_PERMISSION_FILE, DISPATCHER_PERMISSION_FILE, ...more],
  });
}

const REGISTRY_FUNCTIONS = "the functions of functions/registry.yaml";

/**
 * The Permission of the KEDA user: write on the functions' work queues and
 * nothing else. KEDA counts a queue's messages with a passive declaration,
 * which RabbitMQ allows from 4.3.1 on to a user with any permission on the
 * queue (4.2.6 and 4.3.0 asked for configure; earlier ones for none). Write
 * on a queue only lets a user bind it to an exchange it may read, and this
 * user may read none: it can neither consume, publish nor delete.
 */
export function kedaPermission(functions: readonly DeployedFunction[]): RabbitmqPermission {
  for (const fn of functions) checkFunction(fn);
  const queues = [...new Set(functions.map(({ queue }) => queue))].sort();
  return {
    apiVersion: RABBITMQ_API_VERSION,
    kind: "Permission",
    metadata: { name: KEDA_USER, labels: { "app.kubernetes.io/component": "broker" } },
    spec: {
      vhost: "/",
      userReference: { name: KEDA_USER },
      permissions: {
        configure: "^$",
        write: queues.length === 0 ? "^$" : `^(${queues.join("|")})$`,
        read: "^$",
      },
      rabbitmqClusterReference: { name: RABBITMQ_CLUSTER },
    },
  };
}

/** `ops/kubernetes/functions/keda-permission.yaml`. */
export function kedaPermissionFile(functions: readonly DeployedFunction[]): string {
  return GENERATED(REGISTRY_FUNCTIONS) + yamlDocuments([kedaPermission(functions)]);
}

/**
 * The Permission of the dispatcher user (its `User` is in
 * broker-topology.yaml): the compose stack's, `dispatcherPermissions()` of
 * ops/rabbitmq/definitions.ts, on the functions' queues.
 */
export function dispatcherPermission(functions: readonly DeployedFunction[]): RabbitmqPermission {
  for (const fn of functions) checkFunction(fn);
  return {
    apiVersion: RABBITMQ_API_VERSION,
    kind: "Permission",
    metadata: { name: DISPATCHER_USER, labels: { "app.kubernetes.io/component": "broker" } },
    spec: {
      vhost: "/",
      userReference: { name: DISPATCHER_USER },
      permissions: dispatcherPermissions(functions.map(({ queue }) => queue).sort()),
      rabbitmqClusterReference: { name: RABBITMQ_CLUSTER },
    },
  };
}

/**
 * The dispatcher's topic permission on the events exchange: the event types
 * the registry's `events.emitters` grants it, none without a grant.
 */
export function dispatcherTopicPermission(
  patterns: readonly string[] = [],
): RabbitmqTopicPermission {
  return {
    apiVersion: RABBITMQ_API_VERSION,
    kind: "TopicPermission",
    metadata: {
      name: `${DISPATCHER_USER}-events`,
      labels: { "app.kubernetes.io/component": "broker" },
    },
    spec: {
      vhost: "/",
      userReference: { name: DISPATCHER_USER },
      permissions: topicPermissionsOf({ emitterPatterns: patterns }),
      rabbitmqClusterReference: { name: RABBITMQ_CLUSTER },
    },
  };
}

/** `ops/kubernetes/functions/dispatcher-permission.yaml`. */
export function dispatcherPermissionFile(
  functions: readonly DeployedFunction[],
  emitterPatterns: readonly string[] = [],
): string {
  return GENERATED(REGISTRY_FUNCTIONS) +
    yamlDocuments([dispatcherPermission(functions), dispatcherTopicPermission(emitterPatterns)]);
}

/** The mark of every generated file, which says a directory of functions/ may be deleted. */
export const GENERATED_MARK = "# Generated by ops/kubernetes/function_manifests.ts";

/**
 * Every file of `ops/kubernetes/functions/`, by its path there: each
 * function's directory, the kustomization listing them, and the
 * Permissions of KEDA and the dispatcher. Pure.
 */
export function functionsDirectoryFiles(
  functions: readonly DeployedFunction[],
  options: FunctionManifestsOptions = {},
): Record<string, string> {
  const files: Record<string, string> = {};
  for (const fn of functions) {
    for (const [file, text] of Object.entries(functionManifestFiles(fn, options))) {
      files[`${fn.name}/${file}`] = text;
    }
  }
  files["kustomization.yaml"] = functionsKustomization(functions.map(({ name }) => name));
  files[KEDA_PERMISSION_FILE] = kedaPermissionFile(functions);
  files[DISPATCHER_PERMISSION_FILE] = dispatcherPermissionFile(
    functions,
    options.dispatcherEmits,
  );
  return files;
}
