/**
 * A workload of the base's own images (a function's workers, the scheduler,
 * the gateway) as Kubernetes objects, one builder for the three: its broker
 * user with its permissions (messaging topology operator), a hardened
 * `Deployment` that reads its broker password from a mounted file and is
 * probed on `/healthz`, and a `NetworkPolicy` that lets it reach the broker
 * and DNS only. What differs between them (replicas, port, resources, the
 * volume of its secrets, what may come in) each passes in.
 *
 * @module
 */

import type { IDeployment } from "kubernetes-models/apps/v1/Deployment";
import type { INetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import type { INetworkPolicyEgressRule } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicyEgressRule";
import type { INetworkPolicyIngressRule } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicyIngressRule";
import type { IAffinity } from "kubernetes-models/v1/Affinity";
import type { IEnvVar } from "kubernetes-models/v1/EnvVar";
import type { IPodSecurityContext } from "kubernetes-models/v1/PodSecurityContext";
import type { IResourceRequirements } from "kubernetes-models/v1/ResourceRequirements";
import type { ISecurityContext } from "kubernetes-models/v1/SecurityContext";
import type { IVolume } from "kubernetes-models/v1/Volume";
import { WORKER_IMAGE_FILES } from "../../runtime/defaults.ts";
import {
  RABBITMQ_API_VERSION,
  type RabbitmqPermission,
  type RabbitmqTopicPermission,
  type RabbitmqUser,
} from "./rabbitmq_resources.ts";

/** The `RabbitmqCluster`, hence its client Service, as the worker image's `--allow-net` names it. */
export const RABBITMQ_CLUSTER = "rabbitmq";
/** The broker's AMQP port. */
export const AMQP_PORT = 5672;
/** The user the base's images run as: distroless `nonroot`. */
export const WORKER_UID = 65532;
/**
 * Kubernetes' grace before it kills a stopping pod of the base's images:
 * above a worker's `SHUTDOWN_GRACE_MS` (function_manifests.ts).
 */
export const TERMINATION_GRACE_SECONDS = 30;
/** Label of the RabbitMQ pods, set by the cluster operator to the cluster's name. */
export const RABBITMQ_POD_LABELS = {
  "app.kubernetes.io/name": RABBITMQ_CLUSTER,
  "app.kubernetes.io/component": "rabbitmq",
} as const;

/** A Kubernetes object as the manifests hold it. */
export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

/** Where every image of the base reads its broker password (`AMQP_PASSWORD_FILE`). */
const PASSWORD_FILE = WORKER_IMAGE_FILES.AMQP_PASSWORD_FILE;
/** The directory of {@linkcode PASSWORD_FILE}, mounted from Secrets. */
const SECRETS_DIR = PASSWORD_FILE.slice(0, PASSWORD_FILE.lastIndexOf("/"));
/** The password file's name in its directory: a volume's item path. */
export const PASSWORD_FILE_NAME = PASSWORD_FILE.slice(SECRETS_DIR.length + 1);

/** The pod security of every pod of the base's own images. */
export function hardenedPodSecurity(): IPodSecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: WORKER_UID,
    runAsGroup: WORKER_UID,
    fsGroup: WORKER_UID,
    seccompProfile: { type: "RuntimeDefault" },
  };
}

/** The container security of the same pods: read-only, no capability, no escalation. */
export function hardenedContainerSecurity(): ISecurityContext {
  return {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ["ALL"] },
  };
}

/** The egress of a pod that needs the broker only: the RabbitMQ pods on AMQP, and the cluster DNS. */
export function brokerOnlyEgress(): INetworkPolicyEgressRule[] {
  return [
    {
      to: [{ podSelector: { matchLabels: { ...RABBITMQ_POD_LABELS } } }],
      ports: [{ port: AMQP_PORT, protocol: "TCP" }],
    },
    {
      to: [{
        namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } },
        podSelector: { matchLabels: { "k8s-app": "kube-dns" } },
      }],
      ports: [{ port: 53, protocol: "UDP" }, { port: 53, protocol: "TCP" }],
    },
  ];
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** `task_a` as Kubernetes object names spell it: `task-a`. */
export function kubernetesName(name: string): string {
  const spelled = name.replaceAll("_", "-");
  if (!DNS_LABEL.test(spelled)) {
    throw new TypeError(
      `Cannot name a Kubernetes object after '${name}' as '${spelled}' is not a DNS label: use lower-case letters, digits and inner _`,
    );
  }
  return spelled;
}

/** The Secret with a broker user's `username` and `password`, which you create (docs/kubernetes.md). */
export function credentialsSecretOf(user: string): string {
  return `broker-user-${kubernetesName(user)}`;
}

/** The labels of a workload's objects: `app.kubernetes.io/name` and a component. */
export function labelsOf(name: string): {
  selector: { "app.kubernetes.io/name": string };
  labels: (component: string) => Record<string, string>;
} {
  const selector = { "app.kubernetes.io/name": name };
  return {
    selector,
    labels: (component) => ({ ...selector, "app.kubernetes.io/component": component }),
  };
}

/** Options for {@linkcode brokerUserManifests}. */
export interface BrokerUserOptions {
  /** The labels of the resources. */
  labels: Record<string, string>;
  permissions: RabbitmqPermission["spec"]["permissions"];
  /** Its topic permission on the events exchange, if it has one. */
  topicPermissions?: RabbitmqTopicPermission["spec"]["permissions"];
}

/**
 * A broker user of the cluster, with the password of its Secret
 * ({@linkcode credentialsSecretOf}), its permissions, and its topic
 * permission when it has one.
 */
export function brokerUserManifests(
  user: string,
  options: BrokerUserOptions,
): (RabbitmqUser | RabbitmqPermission | RabbitmqTopicPermission)[] {
  const name = kubernetesName(user);
  const cluster = { name: RABBITMQ_CLUSTER };
  const { labels } = options;
  const resources: (RabbitmqUser | RabbitmqPermission | RabbitmqTopicPermission)[] = [
    {
      apiVersion: RABBITMQ_API_VERSION,
      kind: "User",
      metadata: { name, labels },
      spec: {
        rabbitmqClusterReference: cluster,
        importCredentialsSecret: { name: credentialsSecretOf(user) },
      },
    },
    {
      apiVersion: RABBITMQ_API_VERSION,
      kind: "Permission",
      metadata: { name, labels },
      spec: {
        vhost: "/",
        userReference: { name },
        permissions: options.permissions,
        rabbitmqClusterReference: cluster,
      },
    },
  ];
  if (options.topicPermissions) {
    resources.push({
      apiVersion: RABBITMQ_API_VERSION,
      kind: "TopicPermission",
      metadata: { name: `${name}-events`, labels },
      spec: {
        vhost: "/",
        userReference: { name },
        permissions: options.topicPermissions,
        rabbitmqClusterReference: cluster,
      },
    });
  }
  return resources;
}

/** The volume of a workload that reads its broker user's password, and nothing else. */
export function passwordVolume(user: string): IVolume {
  return {
    name: "amqp-password",
    secret: {
      secretName: credentialsSecretOf(user),
      items: [{ key: "password", path: PASSWORD_FILE_NAME }],
      // 0400; with fsGroup the kubelet adds group read for uid 65532.
      defaultMode: 0o400,
    },
  };
}

/** Options for {@linkcode workloadDeployment}. */
export interface WorkloadOptions {
  /** The Deployment's name, and its pods' `app.kubernetes.io/name`. */
  name: string;
  /** Its pods' `app.kubernetes.io/component`, and its container's name. */
  component: string;
  image: string;
  /** The broker user it connects as, with the password in its volume. */
  user: string;
  /** @default {none: something else sets them, as KEDA does a worker's} */
  replicas?: number;
  affinity?: IAffinity;
  /** Its variables after `AMQP_URL` and `AMQP_PASSWORD_FILE`. */
  env?: IEnvVar[];
  /** The port it serves `/healthz` on. */
  port: { name: string; containerPort: number };
  resources: IResourceRequirements;
  /**
   * What is mounted at the password file's directory.
   * @default {passwordVolume(user)}
   */
  volume?: IVolume;
}

/**
 * The hardened `Deployment` of a workload: non-root, read-only, no
 * capability, no service account token; ready while `/healthz` answers 200,
 * and restarted only after a minute of failures (a pod waiting for the
 * broker is not stuck).
 */
export function workloadDeployment(options: WorkloadOptions): IDeployment {
  const { name, component, port } = options;
  const { selector, labels } = labelsOf(name);
  const volume = options.volume ?? passwordVolume(options.user);
  const healthz = { httpGet: { path: "/healthz", port: port.name } };
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, labels: labels(component) },
    spec: {
      ...(options.replicas !== undefined && { replicas: options.replicas }),
      selector: { matchLabels: selector },
      template: {
        metadata: { labels: labels(component) },
        spec: {
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: TERMINATION_GRACE_SECONDS,
          securityContext: hardenedPodSecurity(),
          ...(options.affinity && { affinity: options.affinity }),
          containers: [{
            name: component,
            image: options.image,
            env: [
              {
                name: "AMQP_URL",
                value: `amqp://${options.user}@${RABBITMQ_CLUSTER}:${AMQP_PORT}`,
              },
              { name: "AMQP_PASSWORD_FILE", value: PASSWORD_FILE },
              ...(options.env ?? []),
            ],
            ports: [{ name: port.name, containerPort: port.containerPort, protocol: "TCP" }],
            readinessProbe: { ...healthz, periodSeconds: 5, failureThreshold: 2 },
            livenessProbe: {
              ...healthz,
              initialDelaySeconds: 20,
              periodSeconds: 10,
              failureThreshold: 6,
            },
            resources: options.resources,
            securityContext: hardenedContainerSecurity(),
            volumeMounts: [{ name: volume.name, mountPath: SECRETS_DIR, readOnly: true }],
          }],
          volumes: [volume],
        },
      },
    },
  };
}

/**
 * The `NetworkPolicy` of a workload `name`: `ingress` may come in (none
 * when empty: the kubelet's probes come from the node, which network
 * plugins let through whatever the policy), and only the broker and DNS are
 * reached.
 */
export function brokerOnlyPolicy(
  name: string,
  component: string,
  ingress: INetworkPolicyIngressRule[],
): INetworkPolicy {
  const { selector, labels } = labelsOf(name);
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name, labels: labels(component) },
    spec: {
      podSelector: { matchLabels: selector },
      policyTypes: ["Ingress", "Egress"],
      ingress,
      egress: brokerOnlyEgress(),
    },
  };
}
