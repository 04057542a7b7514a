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

import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { INetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { queueArguments } from "../../core/broker/mod.ts";
import {
  SCHEDULE_EXCHANGE,
  SCHEDULER_QUEUE,
  SCHEDULER_QUEUE_DELIVERY_LIMIT,
} from "../../core/contract/schedule.ts";
import { SCHEDULER_USER } from "../../core/contract/users.ts";
import { WORKER_IMAGE_FILES } from "../../runtime/defaults.ts";
import { schedulerPermissions } from "../rabbitmq/definitions.ts";
import {
  AMQP_PORT,
  brokerOnlyEgress,
  credentialsSecretOf,
  generatedFile,
  hardenedContainerSecurity,
  hardenedPodSecurity,
  kubernetesName,
  type Manifest,
  RABBITMQ_CLUSTER,
  TERMINATION_GRACE_SECONDS,
  WORKER_IMAGE_TAG,
} from "./function_manifests.ts";
import {
  RABBITMQ_API_VERSION,
  type RabbitmqExchange,
  type RabbitmqPermission,
  type RabbitmqQueue,
  type RabbitmqUser,
} from "./rabbitmq_resources.ts";

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
  const selector = { "app.kubernetes.io/name": name };
  const labels = (component: string) => ({ ...selector, "app.kubernetes.io/component": component });
  const cluster = { name: RABBITMQ_CLUSTER };
  const user = kubernetesName(SCHEDULER_USER);
  const passwordFile = WORKER_IMAGE_FILES.AMQP_PASSWORD_FILE;
  const secretsDir = passwordFile.slice(0, passwordFile.lastIndexOf("/"));

  const brokerUser: RabbitmqUser = {
    apiVersion: RABBITMQ_API_VERSION,
    kind: "User",
    metadata: { name: user, labels: labels("broker") },
    spec: {
      rabbitmqClusterReference: cluster,
      importCredentialsSecret: { name: credentialsSecretOf(SCHEDULER_USER) },
    },
  };
  const permission: RabbitmqPermission = {
    apiVersion: RABBITMQ_API_VERSION,
    kind: "Permission",
    metadata: { name: user, labels: labels("broker") },
    spec: {
      vhost: "/",
      userReference: { name: user },
      permissions: schedulerPermissions([...scheduledQueues].sort()),
      rabbitmqClusterReference: cluster,
    },
  };
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

  const healthz = { httpGet: { path: "/healthz", port: "health" } };
  const deployment: IDeployment = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, labels: labels("scheduler") },
    spec: {
      replicas: SCHEDULER_REPLICAS,
      selector: { matchLabels: selector },
      template: {
        metadata: { labels: labels("scheduler") },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: TERMINATION_GRACE_SECONDS,
          securityContext: hardenedPodSecurity(),
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
          containers: [{
            name: "scheduler",
            image: SCHEDULER_IMAGE,
            env: [
              {
                name: "AMQP_URL",
                value: `amqp://${SCHEDULER_USER}@${RABBITMQ_CLUSTER}:${AMQP_PORT}`,
              },
              { name: "AMQP_PASSWORD_FILE", value: passwordFile },
            ],
            ports: [{ name: "health", containerPort: SCHEDULER_HEALTH_PORT, protocol: "TCP" }],
            // 200 while connected, active or standby: both are ready to fire.
            readinessProbe: { ...healthz, periodSeconds: 5, failureThreshold: 2 },
            livenessProbe: {
              ...healthz,
              initialDelaySeconds: 20,
              periodSeconds: 10,
              failureThreshold: 6,
            },
            resources: {
              requests: { cpu: "50m", memory: "64Mi" },
              limits: { cpu: "500m", memory: "256Mi" },
            },
            securityContext: hardenedContainerSecurity(),
            volumeMounts: [{ name: "amqp-password", mountPath: secretsDir, readOnly: true }],
          }],
          volumes: [{
            name: "amqp-password",
            secret: {
              secretName: credentialsSecretOf(SCHEDULER_USER),
              items: [{ key: "password", path: passwordFile.slice(secretsDir.length + 1) }],
              defaultMode: 0o400,
            },
          }],
        },
      },
    },
  };

  const networkPolicy: INetworkPolicy = {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name, labels: labels("scheduler") },
    spec: {
      podSelector: { matchLabels: selector },
      policyTypes: ["Ingress", "Egress"],
      // Nothing comes in: the kubelet's probes come from the node, which
      // network plugins let through whatever the policy.
      ingress: [],
      egress: brokerOnlyEgress(),
    },
  };

  return [
    brokerUser,
    permission,
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
