import assert from "node:assert/strict";
import { checkRabbitmqResource } from "./_rabbitmq_resources.ts";

const QUEUE = {
  apiVersion: "rabbitmq.com/v1beta1",
  kind: "Queue",
  metadata: { name: "queue-a" },
  spec: {
    name: "queue_a",
    type: "quorum",
    durable: true,
    arguments: { "x-delivery-limit": 5 },
    rabbitmqClusterReference: { name: "rabbitmq" },
  },
};

Deno.test("checkRabbitmqResource() accepts a resource of the shape of its CRD", () => {
  assert.deepEqual(checkRabbitmqResource(QUEUE), []);
});

Deno.test("checkRabbitmqResource() names a misspelt field, which a cluster would drop silently", () => {
  const queue = { ...QUEUE, spec: { ...QUEUE.spec, durible: true } };
  assert.deepEqual(checkRabbitmqResource(queue), [
    "Queue.spec.durible is not a field checked here: fix its name, or add it to rabbitmq_resources.ts after checking the operator's CRD",
  ]);
});

Deno.test("checkRabbitmqResource() names missing fields, wrong types and values off the enum", () => {
  const { rabbitmqClusterReference: _, ...spec } = QUEUE.spec;
  const queue = { ...QUEUE, spec: { ...spec, durable: "yes", type: "lazy" } };
  assert.deepEqual(checkRabbitmqResource(queue), [
    "Queue.spec.rabbitmqClusterReference is required",
    'Queue.spec.type must be one of quorum, classic, stream: current value is "lazy"',
    'Queue.spec.durable must be a boolean: current value is "yes"',
  ]);
  const cluster = {
    apiVersion: "rabbitmq.com/v1beta1",
    kind: "RabbitmqCluster",
    metadata: { name: "rabbitmq" },
    spec: { replicas: -1, resources: { limits: { memory: "2 GB" } } },
  };
  assert.deepEqual(checkRabbitmqResource(cluster), [
    "RabbitmqCluster.spec.replicas must be a whole number >= 0: current value is -1",
    'RabbitmqCluster.spec.resources.limits.memory must be a quantity such as 500m or 1Gi: current value is "2 GB"',
  ]);
});

Deno.test("checkRabbitmqResource() throws a TypeError for a kind it does not know", () => {
  assert.throws(
    () => checkRabbitmqResource({ apiVersion: "rabbitmq.com/v1beta1", kind: "Shovel" }),
    TypeError,
  );
  assert.throws(() => checkRabbitmqResource({ apiVersion: "v1", kind: "Queue" }), TypeError);
});
