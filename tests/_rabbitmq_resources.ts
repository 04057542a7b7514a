/**
 * Checks a RabbitMQ operator resource by hand against the shapes of the
 * fields the Kubernetes manifests use (ops/kubernetes/rabbitmq_resources.ts),
 * with the types, enums and required fields of the operators' CRDs (cluster
 * operator 2.x, topology operator 1.17 or later, whose `Vhost` takes
 * `limits`). Any other field fails the check, so a misspelt one cannot slip
 * through: a cluster would prune it without a word. To use a new field, look
 * it up in the operator's CRD and add it here.
 *
 * @module
 */

import {
  RABBITMQ_API_VERSION,
  type RabbitmqResource,
} from "../ops/kubernetes/rabbitmq_resources.ts";

type Shape =
  | "string"
  | "boolean"
  | "integer"
  | "quantity"
  | "scalar"
  | { enum: readonly string[] }
  | { map: Shape }
  | { items: Shape }
  | { fields: Record<string, Shape>; required?: readonly string[] };

const QUANTITY =
  /^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$/;

const METADATA: Shape = {
  fields: {
    name: "string",
    namespace: "string",
    labels: { map: "string" },
    annotations: { map: "string" },
  },
  required: ["name"],
};

const CLUSTER_REFERENCE: Shape = { fields: { name: "string" }, required: ["name"] };
const NAME_REFERENCE: Shape = { fields: { name: "string" }, required: ["name"] };

function resource(spec: Shape): Shape {
  return {
    fields: { apiVersion: "string", kind: "string", metadata: METADATA, spec },
    required: ["apiVersion", "kind", "metadata", "spec"],
  };
}

const SHAPES: Record<RabbitmqResource["kind"], Shape> = {
  RabbitmqCluster: resource({
    fields: {
      replicas: "integer",
      image: "string",
      resources: {
        fields: { requests: { map: "quantity" }, limits: { map: "quantity" } },
      },
      persistence: { fields: { storage: "quantity", storageClassName: "string" } },
      rabbitmq: {
        fields: { additionalConfig: "string", additionalPlugins: { items: "string" } },
      },
    },
  }),
  User: resource({
    fields: {
      rabbitmqClusterReference: CLUSTER_REFERENCE,
      importCredentialsSecret: NAME_REFERENCE,
      tags: { items: { enum: ["management", "policymaker", "monitoring", "administrator"] } },
    },
    required: ["rabbitmqClusterReference"],
  }),
  Permission: resource({
    fields: {
      vhost: "string",
      userReference: NAME_REFERENCE,
      permissions: {
        fields: { configure: "string", write: "string", read: "string" },
        required: ["configure", "write", "read"],
      },
      rabbitmqClusterReference: CLUSTER_REFERENCE,
    },
    required: ["vhost", "userReference", "permissions", "rabbitmqClusterReference"],
  }),
  TopicPermission: resource({
    fields: {
      vhost: "string",
      userReference: NAME_REFERENCE,
      permissions: {
        fields: { exchange: "string", write: "string", read: "string" },
        required: ["exchange"],
      },
      rabbitmqClusterReference: CLUSTER_REFERENCE,
    },
    required: ["vhost", "permissions", "rabbitmqClusterReference"],
  }),
  Queue: resource({
    fields: {
      name: "string",
      vhost: "string",
      type: { enum: ["quorum", "classic", "stream"] },
      durable: "boolean",
      autoDelete: "boolean",
      arguments: { map: "scalar" },
      deletionPolicy: { enum: ["delete", "retain"] },
      rabbitmqClusterReference: CLUSTER_REFERENCE,
    },
    required: ["name", "rabbitmqClusterReference"],
  }),
  Exchange: resource({
    fields: {
      name: "string",
      vhost: "string",
      type: { enum: ["direct", "fanout", "topic", "headers"] },
      durable: "boolean",
      autoDelete: "boolean",
      rabbitmqClusterReference: CLUSTER_REFERENCE,
    },
    required: ["name", "rabbitmqClusterReference"],
  }),
  Vhost: resource({
    fields: {
      name: "string",
      tags: { items: "string" },
      defaultQueueType: { enum: ["quorum", "classic", "stream"] },
      limits: { fields: { connections: "integer", queues: "integer" } },
      deletionPolicy: { enum: ["delete", "retain"] },
      rabbitmqClusterReference: CLUSTER_REFERENCE,
    },
    required: ["name", "rabbitmqClusterReference"],
  }),
};

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function check(value: unknown, shape: Shape, path: string, problems: string[]): void {
  const wrong = (expected: string) =>
    problems.push(`${path} must be ${expected}: current value is ${JSON.stringify(value)}`);
  if (shape === "string") {
    if (typeof value !== "string") wrong("a string");
  } else if (shape === "boolean") {
    if (typeof value !== "boolean") wrong("a boolean");
  } else if (shape === "integer") {
    if (!Number.isSafeInteger(value) || (value as number) < 0) wrong("a whole number >= 0");
  } else if (shape === "quantity") {
    const ok = (typeof value === "number" && Number.isFinite(value)) ||
      (typeof value === "string" && QUANTITY.test(value));
    if (!ok) wrong("a quantity such as 500m or 1Gi");
  } else if (shape === "scalar") {
    if (!["string", "number", "boolean"].includes(typeof value)) {
      wrong("a string, number or boolean");
    }
  } else if ("enum" in shape) {
    if (typeof value !== "string" || !shape.enum.includes(value)) {
      wrong(`one of ${shape.enum.join(", ")}`);
    }
  } else if ("items" in shape) {
    if (!Array.isArray(value)) return void wrong("a list");
    value.forEach((item, i) => check(item, shape.items, `${path}[${i}]`, problems));
  } else if ("map" in shape) {
    if (!isRecord(value)) return void wrong("a mapping");
    for (const [key, item] of Object.entries(value)) {
      check(item, shape.map, `${path}.${key}`, problems);
    }
  } else {
    if (!isRecord(value)) return void wrong("a mapping");
    for (const key of shape.required ?? []) {
      if (!(key in value)) problems.push(`${path}.${key} is required`);
    }
    for (const [key, item] of Object.entries(value)) {
      const field = shape.fields[key];
      if (field === undefined) {
        problems.push(
          `${path}.${key} is not a field checked here: fix its name, or add it to rabbitmq_resources.ts after checking the operator's CRD`,
        );
      } else {
        check(item, field, `${path}.${key}`, problems);
      }
    }
  }
}

/**
 * The problems of a RabbitMQ operator resource, empty when it has the shape
 * of its kind; throws a `TypeError` for another API version or kind.
 */
export function checkRabbitmqResource(object: unknown): string[] {
  const { apiVersion, kind } = isRecord(object) ? object : {};
  if (apiVersion !== RABBITMQ_API_VERSION || typeof kind !== "string" || !(kind in SHAPES)) {
    throw new TypeError(
      `Cannot check the resource as it is not one of ${
        Object.keys(SHAPES).join(", ")
      } of ${RABBITMQ_API_VERSION}: current kind is '${String(kind)}' of '${String(apiVersion)}'`,
    );
  }
  const problems: string[] = [];
  check(object, SHAPES[kind as RabbitmqResource["kind"]], kind, problems);
  return problems;
}
