/**
 * The Kubernetes objects of `deno task gateway` (docs/gateway.md): its
 * broker user, permissions and topic permission (messaging topology
 * operator), the stream of the record its replicas share (see "What holds
 * across replicas"), a `Deployment` of two replicas probed on `/healthz`,
 * a `Service` on port 8080 (any replica serves any call), and the
 * `NetworkPolicy` that lets HTTP in and only the broker (and DNS) out. The API keys are a Secret of the operator's,
 * `gateway-keys`, never in this repository. The permission names the
 * functions' queues, so `deno task manifests` writes them to
 * `ops/kubernetes/functions/gateway.yaml`.
 *
 * @module
 */

import type { IService } from "kubernetes-models/v1/Service";
import { GATEWAY_USER } from "../../core/contract/users.ts";
import {
  GATEWAY_CALLS_STREAM,
  GATEWAY_CALLS_STREAM_ARGUMENTS,
} from "../../core/contract/gateway_calls.ts";
import { gatewayPermissions, topicPermissionsOf } from "../rabbitmq/definitions.ts";
import { generatedFile, WORKER_IMAGE_TAG } from "./function_manifests.ts";
import {
  brokerOnlyPolicy,
  brokerUserManifests,
  credentialsSecretOf,
  labelsOf,
  type Manifest,
  PASSWORD_FILE_NAME,
  RABBITMQ_CLUSTER,
  workloadDeployment,
} from "./workload.ts";
import { RABBITMQ_API_VERSION, type RabbitmqQueue } from "./rabbitmq_resources.ts";

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
  const { selector, labels } = labelsOf(name);
  const brokerUser = brokerUserManifests(GATEWAY_USER, {
    labels: labels("broker"),
    permissions: gatewayPermissions([...queues].sort()),
    topicPermissions: topicPermissionsOf({ emitterPatterns }),
  });
  const deployment = workloadDeployment({
    name,
    component: "gateway",
    image: GATEWAY_IMAGE,
    user: GATEWAY_USER,
    replicas: GATEWAY_REPLICAS,
    // /healthz: 200 while connected to the broker.
    port: { name: "http", containerPort: GATEWAY_PORT },
    resources: {
      requests: { cpu: "100m", memory: "96Mi" },
      limits: { cpu: "1", memory: "256Mi" },
    },
    // Its password, and the operator's API keys.
    volume: {
      name: "secrets",
      projected: {
        defaultMode: 0o400,
        sources: [
          {
            secret: {
              name: credentialsSecretOf(GATEWAY_USER),
              items: [{ key: "password", path: PASSWORD_FILE_NAME }],
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
    },
  });
  const service: IService = {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, labels: labels("gateway") },
    spec: {
      selector,
      ports: [{ name: "http", port: GATEWAY_PORT, targetPort: "http", protocol: "TCP" }],
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
      rabbitmqClusterReference: { name: RABBITMQ_CLUSTER },
    },
  };
  // HTTP from anywhere the cluster routes (an Ingress controller, say); nothing else.
  const networkPolicy = brokerOnlyPolicy(name, "gateway", [{
    ports: [{ port: GATEWAY_PORT, protocol: "TCP" }],
  }]);
  return [
    ...brokerUser,
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
