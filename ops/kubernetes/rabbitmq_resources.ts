/**
 * The RabbitMQ custom resources the Kubernetes manifests use, typed: no
 * schema package on npm covers the RabbitMQ cluster operator's
 * `RabbitmqCluster` or the messaging topology operator's `User`,
 * `Permission`, `Queue`, `Exchange` and `Vhost` (all `rabbitmq.com/v1beta1`).
 * The tests check every manifest against these shapes by hand
 * (tests/_rabbitmq_resources.ts): to use a new field, add it here and there.
 *
 * @module
 */

/** The API version of every RabbitMQ operator resource used here. */
export const RABBITMQ_API_VERSION = "rabbitmq.com/v1beta1";

/** Metadata of a custom resource, as much as the manifests set. */
export interface ResourceMetadata {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** Which `RabbitmqCluster` a topology resource belongs to (same namespace). */
export interface ClusterReference {
  name: string;
}

/** Permissions of a user on a vhost: regular expressions over resource names. */
export interface VhostPermissions {
  configure: string;
  write: string;
  read: string;
}

/** A RabbitMQ cluster run by the cluster operator. */
export interface RabbitmqCluster {
  apiVersion: typeof RABBITMQ_API_VERSION;
  kind: "RabbitmqCluster";
  metadata: ResourceMetadata;
  spec: {
    replicas?: number;
    image?: string;
    resources?: {
      requests?: Record<string, string | number>;
      limits?: Record<string, string | number>;
    };
    persistence?: { storage?: string | number; storageClassName?: string };
    rabbitmq?: { additionalConfig?: string; additionalPlugins?: string[] };
  };
}

/** A broker user; its name and password come from `importCredentialsSecret`. */
export interface RabbitmqUser {
  apiVersion: typeof RABBITMQ_API_VERSION;
  kind: "User";
  metadata: ResourceMetadata;
  spec: {
    rabbitmqClusterReference: ClusterReference;
    importCredentialsSecret?: { name: string };
    tags?: ("management" | "policymaker" | "monitoring" | "administrator")[];
  };
}

/** The permissions of a `User` on a vhost. */
export interface RabbitmqPermission {
  apiVersion: typeof RABBITMQ_API_VERSION;
  kind: "Permission";
  metadata: ResourceMetadata;
  spec: {
    vhost: string;
    userReference: { name: string };
    permissions: VhostPermissions;
    rabbitmqClusterReference: ClusterReference;
  };
}

/** A user's topic permission on an exchange: regular expressions over routing keys. */
export interface RabbitmqTopicPermission {
  apiVersion: typeof RABBITMQ_API_VERSION;
  kind: "TopicPermission";
  metadata: ResourceMetadata;
  spec: {
    vhost: string;
    userReference: { name: string };
    permissions: { exchange: string; write: string; read: string };
    rabbitmqClusterReference: ClusterReference;
  };
}

/** A queue declared by the topology operator. */
export interface RabbitmqQueue {
  apiVersion: typeof RABBITMQ_API_VERSION;
  kind: "Queue";
  metadata: ResourceMetadata;
  spec: {
    name: string;
    vhost?: string;
    type?: "quorum" | "classic" | "stream";
    durable?: boolean;
    autoDelete?: boolean;
    arguments?: Record<string, string | number | boolean>;
    deletionPolicy?: "delete" | "retain";
    rabbitmqClusterReference: ClusterReference;
  };
}

/** An exchange declared by the topology operator. */
export interface RabbitmqExchange {
  apiVersion: typeof RABBITMQ_API_VERSION;
  kind: "Exchange";
  metadata: ResourceMetadata;
  spec: {
    name: string;
    vhost?: string;
    type?: "direct" | "fanout" | "topic" | "headers";
    durable?: boolean;
    autoDelete?: boolean;
    rabbitmqClusterReference: ClusterReference;
  };
}

/** A vhost declared by the topology operator, with its limits. */
export interface RabbitmqVhost {
  apiVersion: typeof RABBITMQ_API_VERSION;
  kind: "Vhost";
  metadata: ResourceMetadata;
  spec: {
    name: string;
    tags?: string[];
    defaultQueueType?: "quorum" | "classic" | "stream";
    limits?: { connections?: number; queues?: number };
    deletionPolicy?: "delete" | "retain";
    rabbitmqClusterReference: ClusterReference;
  };
}

/** Any RabbitMQ operator resource these manifests use. */
export type RabbitmqResource =
  | RabbitmqCluster
  | RabbitmqUser
  | RabbitmqPermission
  | RabbitmqTopicPermission
  | RabbitmqQueue
  | RabbitmqExchange
  | RabbitmqVhost;
