/**
 * The Kubernetes objects of `deno task gateway` (docs/gateway.md): its
 * broker user, permissions and topic permission (messaging topology
 * operator), the stream of the record its replicas share (see "What holds
 * across replicas"), a `Deployment` of two replicas probed on `/healthz`,
 * a `Service` on port 8080 (any replica serves any call), and the
 * `NetworkPolicy` that lets HTTP in and only
 * the broker (and DNS) out. The API keys are a Secret of the operator's,
 * `gateway-keys`, never in this repository. The permission names the
 * functions' queues, so `deno task manifests` writes them to
 * `ops/kubernetes/functions/gateway.yaml`.
 *
 * @module
 */

import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { IService } from "kubernetes-models/v1/Service";
import type { INetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { GATEWAY_USER } from "../../core/contract/users.ts";
import {
  GATEWAY_CALLS_STREAM,
  GATEWAY_CALLS_STREAM_ARGUMENTS,
} from "../../core/contract/gateway_calls.ts";
import { WORKER_IMAGE_FILES } from "../../runtime/defaults.ts";
import { gatewayPermissions, topicPermissionsOf } from "../rabbitmq/definitions.ts";
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
  type RabbitmqPermission,
  type RabbitmqQueue,
  type RabbitmqTopicPermission,
  type RabbitmqUser,
} from "./rabbitmq_resources.ts";

/** The gateway's replicas. */
export const GATEWAY_REPLICAS = 2;
/** The port it serves HTTP on, in the image and the Service. */
export const GATEWAY_PORT = 8080;
/** The gateway image the base deploys, before kustomize `images:` rewrites it. */
export const GATEWAY_IMAGE = `task-system/gateway:${WORKER_IMAGE_TAG}`;
/** The operator's Secret of API keys: key `gateway_keys.json`, made by `deno task gateway keys add`. */
export const GATEWAY_KEYS_SECRET = "gateway-keys";
/** The file `deno task manifests` writes them to, in `ops/kubernetes/functions/`. */
export const GATEWAY_FILE = "gateway.yaml";

/** The gateway's objects, for the functions' `queues` and its event grant `emitterPatterns`. */
export function gatewayManifests(
  queues: readonly string[],
  emitterPatterns: readonly string[] = [],
): Manifest[] {
  const name = "gateway";
  const selector = { "app.kubernetes.io/name": name };
  const labels = (component: string) => ({ ...selector, "app.kubernetes.io/component": component });
  const cluster = { name: RABBITMQ_CLUSTER };
  const user = kubernetesName(GATEWAY_USER);
  const passwordFile = WORKER_IMAGE_FILES.AMQP_PASSWORD_FILE;
  const secretsDir = passwordFile.slice(0, passwordFile.lastIndexOf("/"));

  const brokerUser: RabbitmqUser = {
    apiVersion: RABBITMQ_API_VERSION,
    kind: "User",
    metadata: { name: user, labels: labels("broker") },
    spec: {
      rabbitmqClusterReference: cluster,
      importCredentialsSecret: { name: credentialsSecretOf(GATEWAY_USER) },
    },
  };
  const permission: RabbitmqPermission = {
    apiVersion: RABBITMQ_API_VERSION,
    kind: "Permission",
    metadata: { name: user, labels: labels("broker") },
    spec: {
      vhost: "/",
      userReference: { name: user },
      permissions: gatewayPermissions([...queues].sort()),
      rabbitmqClusterReference: cluster,
    },
  };
  const topicPermission: RabbitmqTopicPermission = {
    apiVersion: RABBITMQ_API_VERSION,
    kind: "TopicPermission",
    metadata: { name: `${user}-events`, labels: labels("broker") },
    spec: {
      vhost: "/",
      userReference: { name: user },
      permissions: topicPermissionsOf({ emitterPatterns }),
      rabbitmqClusterReference: cluster,
    },
  };

  // Made here, as the gateway's user may not declare it; deleting the resource keeps it.
  const { "x-queue-type": _type, ...streamArguments } = GATEWAY_CALLS_STREAM_ARGUMENTS;
  const stream: RabbitmqQueue = {
    apiVersion: RABBITMQ_API_VERSION,
    kind: "Queue",
    metadata: { name: "gateway-calls", labels: labels("broker") },
    spec: {
      name: GATEWAY_CALLS_STREAM,
      vhost: "/",
      type: "stream",
      durable: true,
      arguments: streamArguments,
      deletionPolicy: "retain",
      rabbitmqClusterReference: cluster,
    },
  };

  const healthz = { httpGet: { path: "/healthz", port: "http" } };
  const deployment: IDeployment = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, labels: labels("gateway") },
    spec: {
      replicas: GATEWAY_REPLICAS,
      selector: { matchLabels: selector },
      template: {
        metadata: { labels: labels("gateway") },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: TERMINATION_GRACE_SECONDS,
          securityContext: hardenedPodSecurity(),
          containers: [{
            name: "gateway",
            image: GATEWAY_IMAGE,
            env: [
              {
                name: "AMQP_URL",
                value: `amqp://${GATEWAY_USER}@${RABBITMQ_CLUSTER}:${AMQP_PORT}`,
              },
              { name: "AMQP_PASSWORD_FILE", value: passwordFile },
            ],
            ports: [{ name: "http", containerPort: GATEWAY_PORT, protocol: "TCP" }],
            // 200 while connected to the broker.
            readinessProbe: { ...healthz, periodSeconds: 5, failureThreshold: 2 },
            livenessProbe: {
              ...healthz,
              initialDelaySeconds: 20,
              periodSeconds: 10,
              failureThreshold: 6,
            },
            resources: {
              requests: { cpu: "100m", memory: "96Mi" },
              limits: { cpu: "1", memory: "256Mi" },
            },
            securityContext: hardenedContainerSecurity(),
            volumeMounts: [{ name: "secrets", mountPath: secretsDir, readOnly: true }],
          }],
          volumes: [{
            name: "secrets",
            projected: {
              defaultMode: 0o400,
              sources: [
                {
                  secret: {
                    name: credentialsSecretOf(GATEWAY_USER),
                    items: [{ key: "password", path: passwordFile.slice(secretsDir.length + 1) }],
                  },
                },
                {
                  secret: {
                    name: GATEWAY_KEYS_SECRET,
                    items: [{ key: "gateway_keys.json", path: "gateway_keys" }],
                  },
                },
              ],
            },
          }],
        },
      },
    },
  };
  const service: IService = {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, labels: labels("gateway") },
    spec: {
      selector,
      ports: [{ name: "http", port: GATEWAY_PORT, targetPort: "http", protocol: "TCP" }],
    },
  };
  const networkPolicy: INetworkPolicy = {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name, labels: labels("gateway") },
    spec: {
      podSelector: { matchLabels: selector },
      policyTypes: ["Ingress", "Egress"],
      // HTTP from anywhere the cluster routes (an Ingress controller, say); nothing else.
      ingress: [{ ports: [{ port: GATEWAY_PORT, protocol: "TCP" }] }],
      egress: brokerOnlyEgress(),
    },
  };
  return [
    brokerUser,
    permission,
    topicPermission,
    stream,
    deployment,
    service,
    networkPolicy,
  ] as unknown as Manifest[];
}

/** `ops/kubernetes/functions/gateway.yaml`. */
export function gatewayManifestFile(
  queues: readonly string[],
  emitterPatterns: readonly string[] = [],
): string {
  return generatedFile(
    "the HTTP gateway, calling the functions of functions/registry.yaml",
    gatewayManifests(queues, emitterPatterns),
  );
}
