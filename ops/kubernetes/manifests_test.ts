/**
 * The Kubernetes base as a cluster would receive it: built by
 * `kubectl kustomize ops/kubernetes` (offline), every object checked
 * against its schema (kubernetes-models, KEDA models; RabbitMQ's resources by
 * hand, see rabbitmq_resources.ts), every worker hardened, and the whole in
 * agreement with functions/registry.yaml, ops/rabbitmq/definitions.ts, the worker
 * runtime and function_manifests.ts. That ops/kubernetes/functions/ is what
 * the registry makes is checked with the other generated files, by
 * tests/function_wiring_test.ts. Without kubectl these tests are ignored, with a
 * message, except in CI (CI=true), where they fail.
 */

import assert from "node:assert/strict";
import { CLOUD_EVENTS_EXCHANGE } from "../../core/contract/cloud_events.ts";
import { relative } from "node:path";
import { parseAllDocuments } from "yaml";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { type IService, Service } from "kubernetes-models/v1/Service";
import { Deployment, type IDeployment } from "kubernetes-models/apps/v1/Deployment";
import {
  type INetworkPolicy,
  NetworkPolicy,
} from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import {
  type IScaledObject,
  ScaledObject,
} from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import {
  type ITriggerAuthentication,
  TriggerAuthentication,
} from "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication";
import {
  CONTROL_EXCHANGE,
  dispatcherPermissions,
  EVENTS_EXCHANGE,
  MAX_QUEUES,
  workerPermissions,
} from "../rabbitmq/definitions.ts";
import { deadLetterQueueOf } from "../../core/contract/names.ts";
import { CANCELLATIONS_STREAM, CANCELLATIONS_STREAM_OPTIONS } from "../../core/contract/cancel.ts";
import {
  GATEWAY_CALLS_STREAM,
  GATEWAY_CALLS_STREAM_OPTIONS,
} from "../../core/contract/gateway_calls.ts";
import { queueArguments } from "../../core/broker/amqp/queue_arguments.ts";
import {
  DEFAULT_METRICS_PORT,
  WORKER_ENV_VARS,
  WORKER_IMAGE_FILES,
} from "../../runtime/defaults.ts";
import {
  AMQP_CLIENT_COMPONENTS,
  deadLetterQueueArguments,
  KEDA_AUTHENTICATION,
  KEDA_NAMESPACE,
  KEDA_OPERATOR_LABELS,
  MONITORING_NAMESPACE,
  NAMESPACE,
  RABBITMQ_OPERATOR_LABELS,
  RABBITMQ_OPERATORS_NAMESPACE,
  RABBITMQ_PORTS,
  WORKER_IMAGE_TAG,
  workerImageOf,
  workQueueArguments,
} from "./function_manifests.ts";
import {
  credentialsSecretOf,
  kubernetesName,
  type Manifest,
  RABBITMQ_CLUSTER,
  RABBITMQ_POD_LABELS,
  WORKER_UID,
} from "./workload.ts";
import { checkRabbitmqResource } from "../../tests/_rabbitmq_resources.ts";
import {
  RABBITMQ_API_VERSION,
  type RabbitmqCluster,
  type RabbitmqExchange,
  type RabbitmqPermission,
  type RabbitmqQueue,
  type RabbitmqUser,
  type RabbitmqVhost,
} from "./rabbitmq_resources.ts";
import { loadRegistry } from "../../core/registry.ts";
import { deployedFunctions, scheduledQueues } from "../manifests/generate.ts";
import { gatewayPermissions, schedulerPermissions } from "../rabbitmq/definitions.ts";
import {
  GATEWAY_IMAGE,
  GATEWAY_KEYS_SECRET,
  GATEWAY_PORT,
  GATEWAY_REPLICAS,
} from "./gateway_manifests.ts";
import {
  SCHEDULER_HEALTH_PORT,
  SCHEDULER_IMAGE,
  SCHEDULER_REPLICAS,
} from "./scheduler_manifests.ts";
import { SCHEDULER_HEALTH_PORT as IMAGE_HEALTH_PORT } from "../../scheduler/health.ts";

const BASE_DIR = new URL(".", import.meta.url).pathname;
const REGISTRY_FILE = new URL("../../functions/registry.yaml", import.meta.url).pathname;
/** The functions the base deploys: the registry's Deno functions, each with its user. */
const FUNCTIONS = deployedFunctions(await loadRegistry(REGISTRY_FILE)).map((fn) => ({
  ...fn,
  user: fn.user ?? fn.name,
}));

const KUBECTL = Deno.env.get("KUBECTL") || "kubectl";
const IN_CI = Deno.env.get("CI") === "true";
/** kubectl builds the base offline in well under a second; a hang fails the test instead. */
const KUBECTL_TIMEOUT_MS = 60_000;
const INSTALL_KUBECTL = "install kubectl (1.32, with kustomize 5.5, builds this base offline), " +
  "or set KUBECTL to its path";

async function kubectlRuns(): Promise<boolean> {
  try {
    const command = new Deno.Command(KUBECTL, {
      args: ["version", "--client"],
      stdout: "null",
      stderr: "null",
      signal: AbortSignal.timeout(KUBECTL_TIMEOUT_MS),
    });
    return (await command.output()).success;
  } catch {
    return false;
  }
}

const NEEDS_KUBECTL = !IN_CI && !(await kubectlRuns());
if (NEEDS_KUBECTL) {
  console.warn(
    `Ignoring the Kubernetes manifest tests: no kubectl runs. To run them, ${INSTALL_KUBECTL}.`,
  );
}

/** Runs `kubectl kustomize dir` and parses its documents. */
async function kustomize(dir: string): Promise<Manifest[]> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(KUBECTL, {
      args: ["kustomize", dir],
      signal: AbortSignal.timeout(KUBECTL_TIMEOUT_MS),
    }).output();
  } catch (error) {
    throw new Error(`Cannot build ${dir} as kubectl does not run: ${INSTALL_KUBECTL}`, {
      cause: error,
    });
  }
  const stderr = new TextDecoder().decode(output.stderr);
  if (output.signal === "SIGTERM") {
    throw new Error(
      `Cannot build ${dir} as kubectl kustomize ran longer than ${KUBECTL_TIMEOUT_MS} ms: killed it`,
    );
  }
  assert.ok(output.success, `kubectl kustomize ${dir} failed:\n${stderr}`);
  const documents = parseAllDocuments(new TextDecoder().decode(output.stdout));
  assert.ok(Array.isArray(documents), "kubectl kustomize printed YAML documents");
  return documents.map((document) => {
    assert.deepEqual(document.errors, [], "kubectl kustomize printed valid YAML");
    return document.toJS() as Manifest;
  });
}

let built: Promise<Manifest[]> | undefined;
/** The base, built once for all tests. */
function base(): Promise<Manifest[]> {
  return built ??= kustomize(BASE_DIR);
}

function ofKind<T>(objects: Manifest[], kind: string): T[] {
  return objects.filter((object) => object.kind === kind) as unknown as T[];
}

/**
 * Whether `object` is one of the scheduler's (scheduler_manifests.ts) or the
 * gateway's (gateway_manifests.ts), not a function's.
 */
function ofScheduler(object: { metadata?: { labels?: Record<string, string> } }): boolean {
  const name = object.metadata?.labels?.["app.kubernetes.io/name"];
  return name === "scheduler" || name === "gateway";
}

/** The workers' Deployments: every one but the scheduler's. */
function workerDeployments(objects: Manifest[]): IDeployment[] {
  return ofKind<IDeployment>(objects, "Deployment").filter((d) => !ofScheduler(d));
}

function nameOf(object: { metadata?: { name?: string } }): string {
  return object.metadata?.name ?? "(unnamed)";
}

/** The one object of `kind` named `name`. */
function find<T extends { metadata?: { name?: string } }>(
  objects: Manifest[],
  kind: string,
  name: string,
): T {
  const found = ofKind<T>(objects, kind).filter((object) => nameOf(object) === name);
  assert.equal(found.length, 1, `exactly one ${kind} '${name}'`);
  return found[0];
}

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  "v1/Namespace": Namespace,
  "v1/Service": Service,
  "apps/v1/Deployment": Deployment,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
  "keda.sh/v1alpha1/TriggerAuthentication": TriggerAuthentication,
};

Deno.test({
  name: "kubectl kustomize ops/kubernetes builds objects that match their schemas",
  ignore: NEEDS_KUBECTL,
  async fn() {
    const objects = await base();
    assert.ok(objects.length > 0, "the base has objects");
    for (const object of objects) {
      const what = `${object.kind} '${nameOf(object)}'`;
      if (object.apiVersion === RABBITMQ_API_VERSION) {
        assert.deepEqual(checkRabbitmqResource(object), [], `${what} has the shape of its CRD`);
        continue;
      }
      const Model = MODELS[`${object.apiVersion}/${object.kind}`];
      assert.ok(Model, `${what} of ${object.apiVersion} has a schema here: add its model`);
      assert.doesNotThrow(() => new Model(object as never).validate(), `${what} is valid`);
    }
  },
});

Deno.test({
  name: "kubectl kustomize ops/kubernetes puts everything in the task-system namespace",
  ignore: NEEDS_KUBECTL,
  async fn() {
    const objects = await base();
    assert.equal(find<Manifest>(objects, "Namespace", NAMESPACE).kind, "Namespace");
    for (const object of objects) {
      if (object.kind === "Namespace") continue;
      const metadata = object.metadata as { namespace?: string; labels?: Record<string, string> };
      assert.equal(metadata.namespace, NAMESPACE, `${object.kind} '${nameOf(object)}'`);
      assert.equal(metadata.labels?.["app.kubernetes.io/part-of"], "task-system");
    }
  },
});

Deno.test({
  name: "every worker Deployment is hardened: non-root, read-only, no capabilities, probes, limits",
  ignore: NEEDS_KUBECTL,
  async fn() {
    const deployments = workerDeployments(await base());
    assert.ok(deployments.length > 0, "the base has Deployments");
    for (const deployment of deployments) {
      const name = nameOf(deployment);
      const spec = deployment.spec!;
      assert.equal(spec.replicas, undefined, `${name}: no replicas, the ScaledObject owns them`);
      const pod = spec.template.spec!;
      assert.equal(pod.automountServiceAccountToken, false, `${name}: no service account token`);
      assert.equal(pod.hostNetwork ?? false, false, `${name}: no host network`);
      assert.deepEqual(pod.securityContext, {
        runAsNonRoot: true,
        runAsUser: WORKER_UID,
        runAsGroup: WORKER_UID,
        fsGroup: WORKER_UID,
        seccompProfile: { type: "RuntimeDefault" },
      }, `${name}: pod security context`);
      assert.equal(pod.terminationGracePeriodSeconds, 30, `${name}: termination grace`);
      assert.equal(pod.initContainers, undefined, `${name}: no init containers`);
      assert.ok(pod.containers.length > 0);
      for (const container of pod.containers) {
        const where = `${name}/${container.name}`;
        const security = container.securityContext ?? {};
        assert.equal(security.readOnlyRootFilesystem, true, `${where}: read-only root`);
        assert.equal(security.allowPrivilegeEscalation, false, `${where}: no privilege escalation`);
        assert.equal(security.privileged ?? false, false, `${where}: not privileged`);
        assert.deepEqual(
          security.capabilities,
          { drop: ["ALL"] },
          `${where}: drops every capability`,
        );
        for (const field of ["runAsUser", "runAsGroup", "runAsNonRoot"] as const) {
          assert.equal(security[field], undefined, `${where}: ${field} comes from the pod`);
        }

        const env = new Map(container.env?.map(({ name, value }) => [name, value]));
        const graceMs = Number(env.get("SHUTDOWN_GRACE_MS"));
        assert.ok(graceMs > 0, `${where}: SHUTDOWN_GRACE_MS is set`);
        assert.ok(
          pod.terminationGracePeriodSeconds! * 1000 > graceMs,
          `${where}: Kubernetes waits longer than the worker's SHUTDOWN_GRACE_MS`,
        );

        const { requests, limits } = container.resources ?? {};
        assert.ok(requests?.cpu && requests?.memory, `${where}: requests cpu and memory`);
        assert.ok(limits?.cpu, `${where}: limits cpu`);
        assert.equal(limits?.memory, "256Mi", `${where}: memory limit as in compose.yaml`);

        const metricsPort = Number(env.get("METRICS_PORT") ?? DEFAULT_METRICS_PORT);
        for (const probe of ["readinessProbe", "livenessProbe"] as const) {
          const httpGet = container[probe]?.httpGet;
          assert.equal(httpGet?.path, "/healthz", `${where}: ${probe} asks /healthz`);
          const port = typeof httpGet.port === "number"
            ? httpGet.port
            : container.ports?.find((p) => p.name === httpGet.port)?.containerPort;
          assert.equal(port, metricsPort, `${where}: ${probe} asks the metrics port`);
        }
      }
    }
  },
});

Deno.test({
  name:
    "one worker Deployment per function of functions/registry.yaml, with its image, user and secret",
  ignore: NEEDS_KUBECTL,
  async fn() {
    const objects = await base();
    const deployments = workerDeployments(objects);
    assert.deepEqual(
      deployments.map(nameOf).sort(),
      FUNCTIONS.map(({ name }) => `worker-${kubernetesName(name)}`).sort(),
    );
    for (const { name, queue, user: userName, triggers, emits } of FUNCTIONS) {
      const deployment = find<IDeployment>(objects, "Deployment", `worker-${kubernetesName(name)}`);
      const pod = deployment.spec!.template.spec!;
      assert.equal(pod.containers.length, 1);
      const [container] = pod.containers;
      assert.equal(container.image, workerImageOf(name));
      // A fixed tag: a pod restarted on another node runs what was rolled out.
      assert.equal(container.image, `task-system/worker-${name}:${WORKER_IMAGE_TAG}`);
      assert.doesNotMatch(WORKER_IMAGE_TAG, /^latest$/);
      assert.notEqual(container.imagePullPolicy, "Always", "a pinned tag is pulled once");
      const env = Object.fromEntries(container.env!.map(({ name, value }) => [name, value]));
      assert.deepEqual(env, {
        AMQP_URL: `amqp://${userName}@${RABBITMQ_CLUSTER}:5672`,
        AMQP_PASSWORD_FILE: WORKER_IMAGE_FILES.AMQP_PASSWORD_FILE,
        QUEUE_TYPE: "quorum",
        DELIVERY_LIMIT: "5",
        METRICS_PORT: String(DEFAULT_METRICS_PORT),
        SHUTDOWN_GRACE_MS: "10000",
        LOG_FORMAT: "json",
        FUNCTION_NAME: name,
        FUNCTION_QUEUE: queue,
        ...(triggers?.length && { FUNCTION_TRIGGERS: triggers.join(",") }),
        ...(emits && { FUNCTION_EMITS: emits }),
      });
      for (const variable of Object.keys(env)) {
        assert.ok(
          (WORKER_ENV_VARS as readonly string[]).includes(variable),
          `${variable} is a variable the worker reads`,
        );
      }
      // The password: the one key of the function's user's Secret, at the
      // one path the worker image may read, read-only, mode 0400.
      const user = find<RabbitmqUser>(objects, "User", kubernetesName(userName));
      const secretName = user.spec.importCredentialsSecret?.name;
      assert.equal(secretName, credentialsSecretOf(userName));
      const volumes = pod.volumes!.filter((volume) => volume.secret?.secretName === secretName);
      assert.equal(volumes.length, 1, "the user's Secret is mounted once");
      const [volume] = volumes;
      assert.equal(volume.secret!.defaultMode, 0o400);
      const mount = container.volumeMounts!.find((m) => m.name === volume.name)!;
      assert.equal(mount.readOnly, true);
      assert.equal(mount.subPath, undefined, "a directory mount, which follows Secret updates");
      const paths = volume.secret!.items!.map((item) => `${mount.mountPath}/${item.path}`);
      assert.deepEqual(paths, [WORKER_IMAGE_FILES.AMQP_PASSWORD_FILE]);
      assert.deepEqual(volume.secret!.items!.map((item) => item.key), ["password"]);
    }
  },
});

Deno.test({
  name: "each function has its broker user, permissions, quorum work queue and dead-letter queue",
  ignore: NEEDS_KUBECTL,
  async fn() {
    const objects = (await base()).filter((object) => !ofScheduler(object));
    const users = ofKind<RabbitmqUser>(objects, "User");
    assert.deepEqual(
      users.map(nameOf).sort(),
      [...FUNCTIONS.map(({ user }) => kubernetesName(user)), "dispatcher", "keda"].sort(),
    );
    for (const user of users) {
      assert.equal(user.spec.rabbitmqClusterReference.name, RABBITMQ_CLUSTER);
      assert.equal(user.spec.importCredentialsSecret?.name, `broker-user-${nameOf(user)}`);
      assert.equal(user.spec.tags, undefined, `${nameOf(user)}: no management tags`);
    }
    const permissions = ofKind<RabbitmqPermission>(objects, "Permission");
    assert.equal(permissions.length, users.length, "one Permission per User");
    const permissionOf = (user: string) => {
      const found = permissions.filter((p) => p.spec.userReference.name === user);
      assert.equal(found.length, 1, `one Permission for the User '${user}'`);
      assert.equal(found[0].spec.vhost, "/");
      return found[0].spec.permissions;
    };
    // The compose stack's dispatcher: it may check the functions' queues
    // passively, which RabbitMQ 4.3.1 and later ask write (or more) for.
    assert.deepEqual(
      permissionOf("dispatcher"),
      dispatcherPermissions(FUNCTIONS.map(({ queue }) => queue).sort()),
    );
    const dispatcherWrite = new RegExp(permissionOf("dispatcher").write);
    for (const { queue } of FUNCTIONS) {
      assert.ok(dispatcherWrite.test(queue), `the dispatcher may check ${queue}`);
      assert.ok(dispatcherWrite.test(deadLetterQueueOf(queue)), `and ${queue}'s dead letters`);
    }
    // Write on exactly the functions' work queues: what RabbitMQ 4.3.1 and
    // later ask of a passive declaration, KEDA's way of counting messages.
    assert.deepEqual(permissionOf("keda"), {
      configure: "^$",
      write: `^(${FUNCTIONS.map(({ queue }) => queue).sort().join("|")})$`,
      read: "^$",
    });
    const kedaWrite = new RegExp(permissionOf("keda").write);
    for (const { queue } of FUNCTIONS) {
      assert.ok(kedaWrite.test(queue), `KEDA may passively declare ${queue}`);
      for (const other of [deadLetterQueueOf(queue), `${queue}.retry.1000`, "amq.default"]) {
        assert.ok(!kedaWrite.test(other), `KEDA may not write to ${other}`);
      }
    }

    const queues = ofKind<RabbitmqQueue>(objects, "Queue");
    assert.deepEqual(
      queues.map((queue) => queue.spec.name).sort(),
      [
        ...FUNCTIONS.flatMap(({ queue }) => [queue, deadLetterQueueOf(queue)]),
        CANCELLATIONS_STREAM,
      ].sort(),
    );
    // The stream every worker reads, declared as the compose stack's definitions declare it.
    const stream = queues.find((q) => q.spec.name === CANCELLATIONS_STREAM)!;
    assert.equal(stream.spec.type, "stream");
    assert.equal(stream.spec.deletionPolicy, "retain");
    assert.deepEqual(
      { "x-queue-type": "stream", ...stream.spec.arguments },
      queueArguments(CANCELLATIONS_STREAM_OPTIONS),
    );
    for (const { user, queue, triggers, emits } of FUNCTIONS) {
      assert.deepEqual(
        permissionOf(kubernetesName(user)),
        workerPermissions(queue, { triggers, emits }),
      );
      const work = queues.find((q) => q.spec.name === queue)!;
      const dlq = queues.find((q) => q.spec.name === deadLetterQueueOf(queue))!;
      for (const q of [work, dlq]) {
        assert.equal(q.spec.type, "quorum", `${q.spec.name} is a quorum queue`);
        assert.equal(q.spec.durable, true);
        assert.equal(q.spec.vhost, "/");
        assert.equal(q.spec.deletionPolicy, "retain", "deleting the resource keeps the messages");
      }
      assert.deepEqual(work.spec.arguments, {
        "x-delivery-limit": 5,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": deadLetterQueueOf(queue),
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
      });
      assert.deepEqual(work.spec.arguments, workQueueArguments(queue));
      assert.deepEqual(dlq.spec.arguments, deadLetterQueueArguments());
      assert.equal(
        dlq.spec.arguments?.["x-delivery-limit"],
        2 ** 31 - 1,
        "letters may be read often",
      );
    }

    const exchanges = ofKind<RabbitmqExchange>(objects, "Exchange");
    assert.deepEqual(
      exchanges.map((e) => e.spec).sort((a, b) => a.name.localeCompare(b.name)),
      [
        [CLOUD_EVENTS_EXCHANGE, "topic"],
        [CONTROL_EXCHANGE, "fanout"],
        [EVENTS_EXCHANGE, "fanout"],
      ].map(([name, type]) => ({
        name,
        vhost: "/",
        type,
        durable: true,
        rabbitmqClusterReference: { name: RABBITMQ_CLUSTER },
      })),
    );
    for (const object of [...users, ...permissions, ...queues]) {
      assert.equal(object.spec.rabbitmqClusterReference.name, RABBITMQ_CLUSTER);
    }
  },
});

Deno.test({
  name:
    "the Vhost / caps its queues at MAX_QUEUES of ops/rabbitmq/definitions.ts and is kept on delete",
  ignore: NEEDS_KUBECTL,
  async fn() {
    const vhosts = ofKind<RabbitmqVhost>(await base(), "Vhost");
    assert.equal(vhosts.length, 1, "one Vhost resource");
    const [{ spec }] = vhosts;
    assert.equal(spec.name, "/", "the vhost every user of the base uses");
    assert.equal(spec.limits?.queues, MAX_QUEUES, "the compose stack's limit, from definitions.ts");
    assert.equal(spec.deletionPolicy, "retain", "deleting the resource never deletes the vhost");
    assert.equal(spec.rabbitmqClusterReference.name, RABBITMQ_CLUSTER);
  },
});

Deno.test({
  name: "the RabbitmqCluster rabbitmq pins a RabbitMQ 4 image, the same as stack.yaml's",
  ignore: NEEDS_KUBECTL,
  async fn() {
    const [cluster] = ofKind<RabbitmqCluster>(await base(), "RabbitmqCluster");
    const image = cluster.spec.image ?? "";
    assert.match(
      image,
      /^rabbitmq:4\.\d+\.\d+-management$/,
      "a full 4.x.y version, not a moving tag",
    );
    const stack = await Deno.readTextFile(new URL("../../stack.yaml", import.meta.url));
    const swarmImage = stack.match(/image: \$\{RABBITMQ_IMAGE:-([^}]+)\}/)?.[1];
    assert.equal(swarmImage, image, "Kubernetes and Swarm run the same broker version");
  },
});

Deno.test({
  name: "the RabbitmqCluster rabbitmq has 3 replicas, resources and a 1 MiB message limit",
  ignore: NEEDS_KUBECTL,
  async fn() {
    const objects = await base();
    const clusters = ofKind<RabbitmqCluster>(objects, "RabbitmqCluster");
    assert.deepEqual(clusters.map(nameOf), [RABBITMQ_CLUSTER]);
    const { spec } = clusters[0];
    assert.equal(spec.replicas, 3);
    assert.ok(spec.resources?.requests?.cpu && spec.resources.requests.memory);
    assert.ok(spec.resources?.limits?.cpu && spec.resources.limits.memory);
    const config = spec.rabbitmq?.additionalConfig ?? "";
    // As the workers' limit, so the broker refuses what a worker would reject.
    // The same limit as the compose stack's broker, which leaves room for a reply's envelope.
    const compose = await Deno.readTextFile(new URL("../rabbitmq/rabbitmq.conf", import.meta.url));
    const limit = compose.match(/^max_message_size = (\d+)$/m)![1];
    assert.match(config, new RegExp(`^max_message_size = ${limit}$`, "m"));
    assert.match(config, /^default_queue_type = quorum$/m);
  },
});

Deno.test({
  name: "one ScaledObject per function scales its Deployment from zero on its own queue",
  ignore: NEEDS_KUBECTL,
  async fn() {
    const objects = await base();
    const scaledObjects = ofKind<IScaledObject>(objects, "ScaledObject");
    assert.equal(scaledObjects.length, FUNCTIONS.length);
    const authentications = ofKind<ITriggerAuthentication>(objects, "TriggerAuthentication");
    assert.deepEqual(authentications.map(nameOf), [KEDA_AUTHENTICATION]);
    const keda = find<RabbitmqUser>(objects, "User", "keda");
    const kedaSecret = keda.spec.importCredentialsSecret?.name;
    assert.deepEqual(authentications[0].spec.secretTargetRef, [
      { parameter: "username", name: kedaSecret, key: "username" },
      { parameter: "password", name: kedaSecret, key: "password" },
    ]);
    for (const { name, queue } of FUNCTIONS) {
      const worker = `worker-${kubernetesName(name)}`;
      const scaled = find<IScaledObject>(objects, "ScaledObject", worker);
      const { spec } = scaled;
      assert.equal(spec.scaleTargetRef.name, worker);
      assert.equal(spec.scaleTargetRef.kind ?? "Deployment", "Deployment");
      assert.equal(spec.minReplicaCount, 0, `${worker} scales to zero`);
      assert.ok((spec.maxReplicaCount ?? 0) > 0, `${worker} has a most replicas`);
      assert.ok((spec.cooldownPeriod ?? 0) > 0, `${worker} waits before scaling to zero`);
      assert.ok((spec.initialCooldownPeriod ?? 0) > 0, `${worker} waits after creation too`);
      assert.equal(spec.triggers.length, 1);
      const [trigger] = spec.triggers;
      assert.equal(trigger.type, "rabbitmq");
      assert.equal(trigger.authenticationRef?.name, KEDA_AUTHENTICATION);
      assert.deepEqual(trigger.metadata, {
        protocol: "amqp",
        // KEDA runs in its own namespace: the Service's full name.
        host: `amqp://${RABBITMQ_CLUSTER}.${NAMESPACE}.svc:5672`,
        queueName: queue,
        mode: "QueueLength",
        value: "20",
        activationValue: "0",
      });
    }
  },
});

Deno.test({
  name:
    "one NetworkPolicy per function lets its workers reach only RabbitMQ and DNS, and only monitoring reach them",
  ignore: NEEDS_KUBECTL,
  async fn() {
    const objects = await base();
    assert.equal(
      ofKind(objects, "NetworkPolicy").length,
      FUNCTIONS.length + 3,
      "and the broker's, the scheduler's and the gateway's",
    );
    for (const { name } of FUNCTIONS) {
      const worker = `worker-${kubernetesName(name)}`;
      const deployment = find<IDeployment>(objects, "Deployment", worker);
      const podLabels = deployment.spec!.template.metadata!.labels!;
      const { spec } = find<INetworkPolicy>(objects, "NetworkPolicy", worker);
      const selected = Object.entries(spec!.podSelector?.matchLabels ?? {});
      assert.ok(selected.length > 0, "selects pods by label");
      for (const [key, value] of selected) assert.equal(podLabels[key], value, `selects ${worker}`);
      assert.deepEqual(spec!.policyTypes, ["Ingress", "Egress"]);
      assert.deepEqual(spec!.ingress, [{
        from: [{
          namespaceSelector: {
            matchLabels: { "kubernetes.io/metadata.name": MONITORING_NAMESPACE },
          },
        }],
        ports: [{ port: 9464, protocol: "TCP" }],
      }], "metrics from the monitoring namespace only");
      assert.deepEqual(spec!.egress, [
        {
          to: [{ podSelector: { matchLabels: { ...RABBITMQ_POD_LABELS } } }],
          ports: [{ port: 5672, protocol: "TCP" }],
        },
        {
          to: [{
            namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } },
            podSelector: { matchLabels: { "k8s-app": "kube-dns" } },
          }],
          ports: [{ port: 53, protocol: "UDP" }, { port: 53, protocol: "TCP" }],
        },
      ]);
    }
    // The cluster operator labels the RabbitMQ pods with the cluster's name.
    assert.equal(
      RABBITMQ_POD_LABELS["app.kubernetes.io/name"],
      nameOf(
        find<RabbitmqCluster>(objects, "RabbitmqCluster", RABBITMQ_CLUSTER),
      ),
    );
  },
});

Deno.test({
  name: "the NetworkPolicy rabbitmq opens each broker port only to the pods that need it",
  ignore: NEEDS_KUBECTL,
  async fn() {
    const objects = await base();
    const { spec } = find<INetworkPolicy>(objects, "NetworkPolicy", RABBITMQ_CLUSTER);
    assert.deepEqual(spec!.podSelector, { matchLabels: { ...RABBITMQ_POD_LABELS } });
    assert.deepEqual(spec!.policyTypes, ["Ingress"], "egress stays open for peer discovery");
    const tcp = (port: number, endPort?: number) => ({
      port,
      ...(endPort ? { endPort } : {}),
      protocol: "TCP",
    });
    const inNamespace = (namespace: string) => ({
      namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": namespace } },
    });
    const brokerPods = { podSelector: { matchLabels: { ...RABBITMQ_POD_LABELS } } };
    assert.deepEqual(spec!.ingress, [
      {
        from: [
          {
            podSelector: {
              matchExpressions: [{
                key: "app.kubernetes.io/component",
                operator: "In",
                values: [...AMQP_CLIENT_COMPONENTS],
              }],
            },
          },
          {
            ...inNamespace(KEDA_NAMESPACE),
            podSelector: { matchLabels: { ...KEDA_OPERATOR_LABELS } },
          },
        ],
        ports: [tcp(RABBITMQ_PORTS.amqp)],
      },
      {
        from: [{
          ...inNamespace(RABBITMQ_OPERATORS_NAMESPACE),
          podSelector: { matchLabels: { ...RABBITMQ_OPERATOR_LABELS } },
        }],
        ports: [tcp(RABBITMQ_PORTS.management)],
      },
      { from: [inNamespace(MONITORING_NAMESPACE)], ports: [tcp(RABBITMQ_PORTS.prometheus)] },
      {
        from: [brokerPods],
        ports: [
          tcp(RABBITMQ_PORTS.epmd),
          tcp(RABBITMQ_PORTS.distribution),
          tcp(RABBITMQ_PORTS.cliFirst, RABBITMQ_PORTS.cliLast),
        ],
      },
    ]);
    // The pods allowed AMQP in this namespace are exactly the workers (and tools).
    for (const deployment of ofKind<IDeployment>(objects, "Deployment")) {
      const component = deployment.spec!.template.metadata!.labels!["app.kubernetes.io/component"];
      assert.ok(
        (AMQP_CLIENT_COMPONENTS as readonly string[]).includes(component),
        `${nameOf(deployment)} may reach AMQP`,
      );
    }
    // The broker's pods are no AMQP clients of themselves, nor is anything else.
    assert.ok(!(AMQP_CLIENT_COMPONENTS as readonly string[]).includes("rabbitmq"));
  },
});

Deno.test({
  name: "kustomize images: in an overlay points a worker at another registry and tag",
  ignore: NEEDS_KUBECTL,
  async fn() {
    const overlay = await Deno.makeTempDir({ prefix: "k8s_overlay_" });
    try {
      const [{ name }] = FUNCTIONS;
      const image = workerImageOf(name).replace(/:[^:/]+$/, "");
      await Deno.writeTextFile(
        `${overlay}/kustomization.yaml`,
        [
          "resources:",
          // kustomize takes no absolute path to a base.
          `  - ${relative(overlay, BASE_DIR)}`,
          "images:",
          `  - name: ${image}`,
          `    newName: registry.example.com/${image}`,
          `    newTag: "1.2.3"`,
          "",
        ].join("\n"),
      );
      const objects = await kustomize(overlay);
      const deployment = find<IDeployment>(objects, "Deployment", `worker-${kubernetesName(name)}`);
      assert.equal(
        deployment.spec!.template.spec!.containers[0].image,
        `registry.example.com/${image}:1.2.3`,
      );
    } finally {
      await Deno.remove(overlay, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "the scheduler: two hardened replicas probed on /healthz, its user firing into the scheduled queues only, its queue single-active-consumer",
  ignore: NEEDS_KUBECTL,
  async fn() {
    const objects = await base();
    const deployment = find<IDeployment>(objects, "Deployment", "scheduler");
    const spec = deployment.spec!;
    assert.equal(spec.replicas, SCHEDULER_REPLICAS);
    assert.equal(SCHEDULER_REPLICAS, 2, "one fires, one takes over");
    const pod = spec.template.spec!;
    assert.equal(pod.automountServiceAccountToken, false);
    assert.equal(pod.securityContext?.runAsNonRoot, true);
    assert.equal(pod.securityContext?.runAsUser, WORKER_UID);
    const [container] = pod.containers;
    assert.equal(container.image, SCHEDULER_IMAGE);
    assert.equal(container.securityContext?.readOnlyRootFilesystem, true);
    assert.deepEqual(container.securityContext?.capabilities, { drop: ["ALL"] });
    assert.equal(container.securityContext?.allowPrivilegeEscalation, false);
    assert.ok(container.resources?.limits?.memory && container.resources?.limits?.cpu);
    assert.equal(SCHEDULER_HEALTH_PORT, IMAGE_HEALTH_PORT, "the port the image serves");
    for (const probe of ["readinessProbe", "livenessProbe"] as const) {
      assert.equal(container[probe]?.httpGet?.path, "/healthz", probe);
      assert.equal(container[probe]?.httpGet?.port, "health", probe);
    }
    assert.deepEqual(container.ports, [
      { name: "health", containerPort: SCHEDULER_HEALTH_PORT, protocol: "TCP" },
    ]);
    const env = Object.fromEntries(container.env!.map(({ name, value }) => [name, value]));
    assert.deepEqual(env, {
      AMQP_URL: `amqp://scheduler@${RABBITMQ_CLUSTER}:5672`,
      AMQP_PASSWORD_FILE: WORKER_IMAGE_FILES.AMQP_PASSWORD_FILE,
    });
    assert.equal(pod.volumes![0].secret!.secretName, credentialsSecretOf("scheduler"));
    assert.equal(pod.volumes![0].secret!.defaultMode, 0o400);

    const registry = await loadRegistry(REGISTRY_FILE);
    const permission = find<RabbitmqPermission>(objects, "Permission", "scheduler");
    assert.deepEqual(
      permission.spec.permissions,
      schedulerPermissions(scheduledQueues(registry).sort()),
    );
    const queue = find<RabbitmqQueue>(objects, "Queue", "tasks-scheduler");
    assert.equal(queue.spec.type, "quorum");
    assert.equal(queue.spec.deletionPolicy, "retain", "the schedule's state outlives the resource");
    assert.deepEqual(queue.spec.arguments, {
      "x-single-active-consumer": true,
      "x-delivery-limit": 2 ** 31 - 1,
    });
    const exchange = find<RabbitmqExchange>(objects, "Exchange", "tasks-schedule");
    assert.equal(exchange.spec.type, "direct");

    const policy = find<INetworkPolicy>(objects, "NetworkPolicy", "scheduler").spec!;
    assert.deepEqual(policy.podSelector?.matchLabels, { "app.kubernetes.io/name": "scheduler" });
    assert.deepEqual(policy.policyTypes, ["Ingress", "Egress"]);
    assert.deepEqual(policy.ingress, [], "nothing reaches it");
    assert.deepEqual(policy.egress![0], {
      to: [{ podSelector: { matchLabels: { ...RABBITMQ_POD_LABELS } } }],
      ports: [{ port: 5672, protocol: "TCP" }],
    });
    assert.equal(policy.egress!.length, 2, "RabbitMQ and DNS only");
    const component = spec.template.metadata!.labels!["app.kubernetes.io/component"];
    assert.ok((AMQP_CLIENT_COMPONENTS as readonly string[]).includes(component), "may reach AMQP");
  },
});

Deno.test({
  name:
    "the gateway: two hardened replicas probed on /healthz, a sticky Service, its user calling the functions' queues only, HTTP in and the broker out",
  ignore: NEEDS_KUBECTL,
  async fn() {
    const objects = await base();
    const spec = find<IDeployment>(objects, "Deployment", "gateway").spec!;
    assert.equal(spec.replicas, GATEWAY_REPLICAS);
    const pod = spec.template.spec!;
    assert.equal(pod.automountServiceAccountToken, false);
    assert.equal(pod.securityContext?.runAsNonRoot, true);
    const [container] = pod.containers;
    assert.equal(container.image, GATEWAY_IMAGE);
    assert.equal(container.securityContext?.readOnlyRootFilesystem, true);
    assert.deepEqual(container.securityContext?.capabilities, { drop: ["ALL"] });
    for (const probe of ["readinessProbe", "livenessProbe"] as const) {
      assert.equal(container[probe]?.httpGet?.path, "/healthz", probe);
    }
    const sources = pod.volumes![0].projected!.sources!.map((source) => source.secret!.name);
    assert.deepEqual(sources, [credentialsSecretOf("gateway"), GATEWAY_KEYS_SECRET]);
    assert.equal(pod.volumes![0].projected!.defaultMode, 0o400);

    const registry = await loadRegistry(REGISTRY_FILE);
    const permission = find<RabbitmqPermission>(objects, "Permission", "gateway");
    assert.deepEqual(
      permission.spec.permissions,
      gatewayPermissions(FUNCTIONS.map(({ queue }) => queue).sort()),
    );
    assert.ok(registry.emitters.has("gateway"));
    // The stream of the record the replicas share, as the compose stack's definitions declare it.
    const calls = find<RabbitmqQueue>(objects, "Queue", "gateway-calls").spec;
    assert.equal(calls.name, GATEWAY_CALLS_STREAM);
    assert.equal(calls.type, "stream");
    assert.equal(calls.deletionPolicy, "retain");
    assert.deepEqual(
      { "x-queue-type": "stream", ...calls.arguments },
      queueArguments(GATEWAY_CALLS_STREAM_OPTIONS),
    );

    const service = find<IService>(objects, "Service", "gateway").spec!;
    assert.equal(
      service.sessionAffinity,
      undefined,
      "any replica serves any call: they share a record",
    );
    assert.deepEqual(service.ports!.map((p) => p.port), [GATEWAY_PORT]);

    const policy = find<INetworkPolicy>(objects, "NetworkPolicy", "gateway").spec!;
    assert.deepEqual(policy.ingress, [{ ports: [{ port: GATEWAY_PORT, protocol: "TCP" }] }]);
    assert.equal(policy.egress!.length, 2, "RabbitMQ and DNS only");
    const component = spec.template.metadata!.labels!["app.kubernetes.io/component"];
    assert.ok((AMQP_CLIENT_COMPONENTS as readonly string[]).includes(component), "may reach AMQP");
  },
});
