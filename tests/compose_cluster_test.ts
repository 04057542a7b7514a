/**
 * compose.cluster.yaml and stack.yaml, checked without Docker: every broker
 * node is confined as compose.yaml's rabbitmq, nothing publishes the Erlang
 * distribution ports, the workers keep the image's command save for the
 * nodes they may reach, and Swarm gets only keys it honours.
 * cluster_e2e_test.ts and swarm_e2e_test.ts run them.
 */

import assert from "node:assert/strict";
import { parse } from "yaml";
import { readComposeFile, workerCommand } from "./_docker.ts";

const read = async (file: string) =>
  // deno-lint-ignore no-explicit-any
  parse(await Deno.readTextFile(new URL(`../${file}`, import.meta.url)), { merge: true }) as any;

const compose = await readComposeFile();
const cluster = await read("compose.cluster.yaml");
const stack = await read("stack.yaml");
const stackPublish = await read("stack.publish.yaml");
const NODES = ["rabbitmq", "rabbitmq-2", "rabbitmq-3"];

Deno.test("compose.cluster.yaml confines each node as compose.yaml's rabbitmq", () => {
  const first = compose.services.rabbitmq;
  for (const node of NODES.slice(1)) {
    const service = cluster.services[node];
    const keys = ["image", "user", "read_only", "cap_drop", "security_opt", "mem_limit", "logging"];
    for (const key of keys) {
      assert.deepEqual(service[key], first[key], `${node}.${key}`);
    }
    assert.equal(service.pids_limit, first.pids_limit, `${node}.pids_limit`);
    assert.equal(service.cap_add, undefined, `${node} adds no capability`);
    assert.equal(service.hostname, node, "its node name is rabbit@<its service>");
    assert.ok(
      service.volumes.includes("./ops/rabbitmq/enabled_plugins:/etc/rabbitmq/enabled_plugins:ro"),
      `${node} runs the management plugin only, as compose.yaml's`,
    );
  }
  for (const node of NODES) {
    const secrets = (node === "rabbitmq" ? compose : cluster).services[node].secrets;
    assert.ok(
      secrets.some((s: { source: string; target: string }) =>
        s.source === "erlang_cookie" && s.target === "/var/lib/rabbitmq/.erlang.cookie"
      ),
      `${node} takes the generated cookie`,
    );
    assert.equal(cluster.services[node].healthcheck.test[0], "CMD-SHELL");
    assert.match(cluster.services[node].healthcheck.test[1], /await_online_nodes 3/);
  }
  assert.equal(compose.secrets.erlang_cookie.file, "${SECRETS_DIR:-./secrets}/erlang.cookie");
  const cookie = compose.services["erlang-cookie"];
  assert.equal(cookie.network_mode, "none");
  assert.deepEqual(cookie.cap_add, ["CHOWN"], "it may change an owner, nothing else");
  assert.deepEqual(cookie.cap_drop, ["ALL"]);
});

Deno.test("compose.cluster.yaml and stack.yaml never publish Erlang distribution or epmd", () => {
  for (const file of [cluster, stack]) {
    for (
      const [name, service] of Object.entries(file.services) as [string, { ports?: unknown[] }][]
    ) {
      for (const port of service.ports ?? []) {
        assert.doesNotMatch(
          JSON.stringify(port),
          /\b(25672|4369)\b/,
          `${name} publishes ${JSON.stringify(port)}`,
        );
      }
    }
  }
  for (const node of NODES.slice(1)) {
    for (const port of cluster.services[node].ports as string[]) {
      assert.match(
        port,
        /^\$\{PUBLISH_ADDRESS:-127\.0\.0\.1\}:\$\{[A-Z_0-9]+:-\d+\}:(5672|15672)$/,
      );
    }
  }
});

Deno.test("compose.cluster.yaml keeps each worker's image command but for the nodes it may reach", async () => {
  const image = await workerCommand();
  const workers = Object.entries(compose.services)
    .filter(([, service]) =>
      (service as { build?: { dockerfile?: string } }).build?.dockerfile === "Dockerfile.worker"
    );
  assert.ok(workers.length >= 2);
  for (const [name] of workers) {
    const command: string[] = cluster.services[name].command;
    assert.deepEqual(
      command.filter((arg) => !arg.startsWith("--allow-net=")),
      image.filter((arg) => !arg.startsWith("--allow-net=")),
      `${name}: only --allow-net differs`,
    );
    assert.equal(
      command.find((arg) => arg.startsWith("--allow-net=")),
      "--allow-net=rabbitmq:5672,rabbitmq-2:5672,rabbitmq-3:5672,0.0.0.0:9464",
    );
    for (const node of NODES) {
      assert.ok(
        Object.hasOwn(cluster.services[name].depends_on, node),
        `${name} waits for ${node}`,
      );
    }
  }
});

Deno.test("compose.cluster.yaml keeps the gateway's image command but for the nodes it may reach", async () => {
  const dockerfile = await Deno.readTextFile(new URL("../Dockerfile.gateway", import.meta.url));
  const cmd = /^CMD (\[[\s\S]*?\])\s*$/m.exec(dockerfile.replaceAll("\\\n", ""))!;
  const image: string[] = JSON.parse(cmd[1]);
  const command: string[] = cluster.services.gateway.command;
  assert.deepEqual(
    command.filter((arg) => !arg.startsWith("--allow-net=")),
    image.filter((arg) => !arg.startsWith("--allow-net=")),
    "only --allow-net differs",
  );
  assert.equal(
    command.find((arg) => arg.startsWith("--allow-net=")),
    "--allow-net=rabbitmq:5672,rabbitmq-2:5672,rabbitmq-3:5672,0.0.0.0:8080,127.0.0.1",
  );
  for (const node of NODES.filter((node) => node !== "rabbitmq")) {
    assert.ok(Object.hasOwn(cluster.services.gateway.depends_on, node), `waits for ${node}`);
  }
  assert.equal(
    cluster.services.gateway.environment.AMQP_URL.split(",").length,
    NODES.length,
    "knows every node",
  );
});

Deno.test("stack.yaml holds only what Swarm honours, and confines every service", () => {
  const ignored = [
    "build",
    "security_opt",
    "depends_on",
    "mem_limit",
    "pids_limit",
    "container_name",
  ];
  for (
    const [name, service] of Object.entries(stack.services) as [string, Record<string, unknown>][]
  ) {
    for (const key of ignored) assert.equal(service[key], undefined, `${name} has no ${key}`);
    assert.equal(service.read_only, true, `${name} read_only`);
    assert.deepEqual(service.cap_drop, ["ALL"], `${name} cap_drop`);
    const deploy = service.deploy as {
      replicas: number;
      resources: { limits: { memory: string; pids: number; cpus: string } };
      restart_policy: { condition: string };
    };
    assert.ok(deploy.replicas >= 1, `${name} replicas`);
    assert.match(deploy.resources.limits.memory, /^\d+M$/, `${name} memory limit`);
    assert.ok(deploy.resources.limits.pids > 0, `${name} pids limit`);
    assert.ok(Number(deploy.resources.limits.cpus) > 0, `${name} cpus limit`);
    assert.equal(deploy.restart_policy.condition, "any", `${name} restarts`);
    for (const secret of service.secrets as { mode?: number; uid?: string }[]) {
      if (secret.uid !== undefined) assert.equal(secret.mode, 0o400, `${name} secrets are 0400`);
    }
  }
  assert.equal(stack.version, "3.9", "docker stack deploy needs a version");
});

Deno.test("stack.yaml rotates every service's log and runs the broker without Prometheus", () => {
  for (
    const [name, service] of Object.entries(stack.services) as [string, { logging?: unknown }][]
  ) {
    assert.deepEqual(service.logging, {
      driver: "json-file",
      options: { "max-size": "10m", "max-file": "3" },
    }, `${name} cannot fill the node's disk`);
  }
  assert.deepEqual(stack.services.rabbitmq.configs, [
    { source: "broker_config", target: "/etc/rabbitmq/conf.d/20-task-system.conf" },
    { source: "broker_plugins", target: "/etc/rabbitmq/enabled_plugins" },
  ]);
  assert.equal(stack.configs.broker_plugins.file, "./ops/rabbitmq/enabled_plugins");
});

Deno.test("stack.yaml encrypts its overlay network and publishes nothing unless stack.publish.yaml is added", () => {
  assert.deepEqual(stack.networks, {
    default: { driver: "overlay", driver_opts: { encrypted: "true" } },
  }, "AMQP and its passwords cross hosts inside IPsec");
  for (const [name, service] of Object.entries(stack.services) as [string, { ports?: unknown }][]) {
    assert.equal(service.ports, undefined, `${name} publishes nothing by default`);
    assert.equal(
      (service as { networks?: unknown }).networks,
      undefined,
      `${name} is on the encrypted default network only`,
    );
  }
  assert.equal(stackPublish.version, stack.version);
  assert.deepEqual(Object.keys(stackPublish.services), ["rabbitmq", "gateway"]);
  assert.deepEqual(stackPublish.services.rabbitmq, {
    ports: [{ target: 5672, published: "${AMQP_PORT:-5672}", protocol: "tcp", mode: "host" }],
  }, "opting in publishes AMQP, in host mode");
  assert.deepEqual(stackPublish.services.gateway, {
    ports: [{ target: 8080, published: "${GATEWAY_PORT:-8080}", protocol: "tcp", mode: "host" }],
  }, "and the gateway's HTTP, the same way");
});

Deno.test("stack.yaml pins the broker's version and has no default worker tag", () => {
  assert.match(
    stack.services.rabbitmq.image,
    /^\$\{RABBITMQ_IMAGE:-rabbitmq:4\.\d+\.\d+-management\}$/,
  );
  for (const [name, service] of Object.entries(stack.services) as [string, { image: string }][]) {
    if (name === "rabbitmq") continue;
    assert.match(service.image, /:\$\{IMAGE_TAG:\?[^}]+\}$/, `${name} runs the tag it is given`);
    assert.doesNotMatch(service.image, /latest/);
  }
});
