/**
 * The Kubernetes objects of `deno task scheduler` (docs/schedules.md): its
 * broker user and permissions, the schedule exchange and the scheduler
 * queue (messaging topology operator), a `Deployment` of two replicas (the
 * broker picks the one that fires; the other takes over when it goes) and
 * the `NetworkPolicy` that fences them. The permission names the queues of
 * the functions the registry schedules, so `deno task manifests` writes
 * them to `ops/kubernetes/functions/scheduler.yaml`.
 *
 * @module
 */

import { queueArguments } from "../../core/broker/mod.ts";
import {
  SCHEDULE_EXCHANGE,
  SCHEDULER_QUEUE,
  SCHEDULER_QUEUE_DELIVERY_LIMIT,
} from "../../core/contract/schedule.ts";
import { SCHEDULER_USER } from "../../core/contract/users.ts";
import { schedulerPermissions } from "../rabbitmq/definitions.ts";
import { generatedFile, WORKER_IMAGE_TAG } from "./function_manifests.ts";
import {
  RABBITMQ_API_VERSION,
  type RabbitmqExchange,
  type RabbitmqQueue,
} from "./rabbitmq_resources.ts";
import {
  brokerOnlyPolicy,
  brokerUserManifests,
  kubernetesName,
  labelsOf,
  type Manifest,
  RABBITMQ_CLUSTER,
  workloadDeployment,
} from "./workload.ts";

/** The scheduler's replicas: one fires, one waits to take over. */
export const SCHEDULER_REPLICAS = 2;

/** The port of the scheduler image's `/healthz` (scheduler/health.ts serves it there). */
export const SCHEDULER_HEALTH_PORT = 9465;

/** The scheduler image the base deploys, before kustomize `images:` rewrites it. */
export const SCHEDULER_IMAGE = `task-system/scheduler:${WORKER_IMAGE_TAG}`;

/** The file `deno task manifests` writes them to, in `ops/kubernetes/functions/`. */
export const SCHEDULER_FILE = "scheduler.yaml";

/** The scheduler's objects, for the functions' queues `scheduledQueues`. */
export function schedulerManifests(scheduledQueues: readonly string[]): Manifest[] {
  const name = "scheduler";
  const { selector, labels } = labelsOf(name);
  const cluster = { name: RABBITMQ_CLUSTER };
  const brokerUser = brokerUserManifests(SCHEDULER_USER, {
    labels: labels("broker"),
    permissions: schedulerPermissions([...scheduledQueues].sort()),
  });
  const exchange: RabbitmqExchange = {
    apiVersion: RABBITMQ_API_VERSION,
    kind: "Exchange",
    metadata: {
      name: kubernetesName(SCHEDULE_EXCHANGE.replace(".", "-")),
      labels: labels("broker"),
    },
    spec: {
      name: SCHEDULE_EXCHANGE,
      vhost: "/",
      type: "direct",
      durable: true,
      rabbitmqClusterReference: cluster,
    },
  };
  const { "x-queue-type": _, ...stateArguments } = queueArguments({
    type: "quorum",
    singleActiveConsumer: true,
    deliveryLimit: SCHEDULER_QUEUE_DELIVERY_LIMIT,
  });
  const queue: RabbitmqQueue = {
    apiVersion: RABBITMQ_API_VERSION,
    kind: "Queue",
    metadata: { name: kubernetesName(SCHEDULER_QUEUE.replace(".", "-")), labels: labels("broker") },
    spec: {
      name: SCHEDULER_QUEUE,
      vhost: "/",
      type: "quorum",
      durable: true,
      arguments: stateArguments as Record<string, string | number | boolean>,
      // The schedule's state: deleting the resource keeps it.
      deletionPolicy: "retain",
      rabbitmqClusterReference: cluster,
    },
  };

  const deployment = workloadDeployment({
    name,
    component: "scheduler",
    image: SCHEDULER_IMAGE,
    user: SCHEDULER_USER,
    replicas: SCHEDULER_REPLICAS,
    // On two nodes where there are two: one node's loss leaves a replica.
    affinity: {
      podAntiAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [{
          weight: 100,
          podAffinityTerm: {
            labelSelector: { matchLabels: selector },
            topologyKey: "kubernetes.io/hostname",
          },
        }],
      },
    },
    // /healthz: 200 while connected, active or standby: both are ready to fire.
    port: { name: "health", containerPort: SCHEDULER_HEALTH_PORT },
    resources: {
      requests: { cpu: "50m", memory: "64Mi" },
      limits: { cpu: "500m", memory: "256Mi" },
    },
  });
  // Nothing comes in.
  const networkPolicy = brokerOnlyPolicy(name, "scheduler", []);

  return [
    ...brokerUser,
    exchange,
    queue,
    deployment,
    networkPolicy,
  ] as unknown as Manifest[];
}

/** `ops/kubernetes/functions/scheduler.yaml`, for the functions' queues `scheduledQueues`. */
export function schedulerManifestFile(scheduledQueues: readonly string[]): string {
  return generatedFile(
    "the scheduler, firing the schedules of functions/registry.yaml",
    schedulerManifests(scheduledQueues),
  );
}
