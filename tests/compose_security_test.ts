/**
 * compose.yaml's security settings, checked without Docker: what is
 * published and where, how each worker is confined, and that every worker
 * has a broker user of its own with a secret of its own. e2e_test.ts checks
 * that the running containers get them.
 */

import assert from "node:assert/strict";
import { parse } from "yaml";
import { loadRegistry } from "../core/registry.ts";
import { WORKER_IMAGE_FILES } from "../runtime/defaults.ts";
import { readComposeFile } from "./_docker.ts";

const compose = await readComposeFile();
const text = await Deno.readTextFile(new URL("../compose.yaml", import.meta.url));
const registry = await loadRegistry(
  decodeURIComponent(new URL("../functions/registry.yaml", import.meta.url).pathname),
);
// deno-lint-ignore no-explicit-any
const services: [string, any][] = Object.entries(compose.services);
const workers = services.filter(([, service]) => service.build?.dockerfile === "Dockerfile.worker");

Deno.test("compose.yaml publishes only the broker's AMQP and management ports and the gateway's, on 127.0.0.1 by default", () => {
  for (const [name, service] of services) {
    if (name === "rabbitmq" || name === "gateway") continue;
    assert.equal(service.ports, undefined, `${name} publishes nothing`);
  }
  const ports: string[] = compose.services.rabbitmq.ports;
  assert.deepEqual(ports.map((p) => p.split(":").at(-1)), ["5672", "15672"]);
  assert.deepEqual(compose.services.gateway.ports, [
    "${PUBLISH_ADDRESS:-127.0.0.1}:${GATEWAY_PORT:-8080}:8080",
  ]);
  for (const port of ports) assert.match(port, /^\$\{PUBLISH_ADDRESS:-127\.0\.0\.1\}:/);
});

Deno.test("compose.yaml confines every worker: read-only, no capabilities, limits", () => {
  assert.ok(workers.length >= 2);
  for (const [name, service] of workers) {
    assert.equal(service.read_only, true, `${name} read_only`);
    assert.deepEqual(service.cap_drop, ["ALL"], `${name} cap_drop`);
    assert.equal(service.cap_add, undefined, `${name} adds no capability`);
    assert.deepEqual(service.security_opt, ["no-new-privileges:true"], name);
    assert.match(String(service.mem_limit), /^\d+m$/, `${name} mem_limit`);
    assert.ok(service.pids_limit > 0 && service.pids_limit <= 256, `${name} pids_limit`);
    assert.equal(service.user, undefined, `${name} runs as the image's non-root user`);
    assert.equal(service.command, undefined, `${name} keeps the image's permissions`);
  }
});

Deno.test("compose.yaml gives each worker its own broker user and password secret, never guest", () => {
  assert.ok(!/guest/i.test(text), "compose.yaml never mentions guest");
  const initArgs: string[] = compose.services["secrets-init"].command;
  const users = new Map<string, string>();
  for (const [name, service] of workers) {
    const fn = service.build.args.FUNCTION;
    const entry = registry.functions.get(fn);
    assert.ok(entry, `${name} runs ${fn} of functions/registry.yaml`);
    const { user, queue } = entry;
    const url = new URL(service.environment.AMQP_URL);
    assert.equal(url.password, "", `${name}'s URL carries no password`);
    assert.equal(url.username, user, `${name} connects as its function's user`);
    assert.equal(
      service.environment.AMQP_PASSWORD_FILE,
      WORKER_IMAGE_FILES.AMQP_PASSWORD_FILE,
      `${name} reads its password where the image allows`,
    );
    assert.deepEqual(service.secrets, [{ source: `${user}_password`, target: "amqp_password" }]);
    assert.equal(
      compose.secrets[`${user}_password`].file,
      `\${SECRETS_DIR:-./secrets}/${user}.password`,
    );
    assert.ok(initArgs.includes(`--function=${user}=${queue}`), `secrets-init creates ${user}`);
    users.set(user, name);
  }
  assert.equal(users.size, workers.length, "no two workers share a user");
  const created = initArgs.filter((a) => a.startsWith("--function=")).length;
  assert.equal(created, workers.length, "secrets-init creates no user without a worker");
});

Deno.test("compose.yaml confines the broker: its own user, read-only, no capabilities, limits, a pinned image", () => {
  const broker = compose.services.rabbitmq;
  assert.equal(broker.user, "rabbitmq", "starts as its own user, never root");
  assert.equal(broker.read_only, true);
  assert.deepEqual(broker.cap_drop, ["ALL"]);
  assert.equal(broker.cap_add, undefined, "needs no capability");
  assert.deepEqual(broker.security_opt, ["no-new-privileges:true"]);
  assert.match(String(broker.mem_limit), /^\d+m$/);
  assert.equal(broker.pids_limit, 256, "the process limit docs/security.md states");
  const image = broker.image.match(/^\$\{RABBITMQ_IMAGE:-(.+)\}$/)?.[1] ?? broker.image;
  assert.match(image, /^rabbitmq:\d+\.\d+\.\d+(-management)?$|@sha256:/, `${image} is pinned`);
});

Deno.test("compose.yaml runs secrets-init before the broker, without network or spare capabilities", async () => {
  const init = compose.services["secrets-init"];
  assert.equal(init.network_mode, "none");
  assert.equal(init.read_only, true);
  assert.deepEqual(init.cap_drop, ["ALL"]);
  assert.deepEqual([...init.cap_add].sort(), ["CHOWN", "DAC_OVERRIDE", "FOWNER"]);
  assert.ok(init.command.includes("--worker-owner=65532:65532"), "workers run as 65532");
  const broker = compose.services.rabbitmq;
  assert.deepEqual(broker.depends_on, {
    "secrets-init": { condition: "service_completed_successfully" },
    "erlang-cookie": { condition: "service_completed_successfully" },
  });
  assert.deepEqual(broker.secrets, [
    { source: "broker_definitions", target: "definitions.json" },
    // Generated, not the one an image may carry: see compose_cluster_test.ts.
    { source: "erlang_cookie", target: "/var/lib/rabbitmq/.erlang.cookie" },
  ]);
  assert.ok(
    broker.volumes.includes(
      "./ops/rabbitmq/rabbitmq.conf:/etc/rabbitmq/conf.d/20-task-system.conf:ro",
    ),
  );
  const conf = await Deno.readTextFile(new URL("../ops/rabbitmq/rabbitmq.conf", import.meta.url));
  assert.match(conf, /^load_definitions = \/run\/secrets\/definitions\.json$/m);
});

Deno.test("compose.yaml's Celery worker is optional, confined like the workers, and has its own user", async () => {
  const celery = compose.services["worker-celery"];
  assert.deepEqual(celery.profiles, ["celery"], "only with --profile celery");
  assert.equal(celery.build.dockerfile, "Dockerfile.celery");
  assert.equal(celery.build.args.CELERY_BASE_IMAGE, "${CELERY_BASE_IMAGE:-debian:trixie-slim}");
  assert.equal(celery.read_only, true);
  assert.deepEqual(celery.cap_drop, ["ALL"]);
  assert.equal(celery.cap_add, undefined);
  assert.deepEqual(celery.security_opt, ["no-new-privileges:true"]);
  assert.match(String(celery.mem_limit), /^\d+m$/);
  assert.ok(celery.pids_limit > 0 && celery.pids_limit <= 256);
  assert.equal(celery.user, undefined, "runs as the image's non-root user");
  assert.equal(celery.ports, undefined);
  const url = new URL(celery.environment.AMQP_URL);
  assert.equal(url.username, "task_c");
  assert.equal(url.password, "", "its password comes from its secret");
  assert.equal(celery.environment.AMQP_PASSWORD_FILE, "/run/secrets/amqp_password");
  assert.deepEqual(celery.secrets, [{ source: "task_c_password", target: "amqp_password" }]);
  const initArgs: string[] = compose.services["secrets-init"].command;
  const queue = celery.environment.CELERY_QUEUE;
  assert.ok(initArgs.includes(`--celery-function=task_c=${queue}`), "secrets-init creates task_c");
  assert.ok(initArgs.includes("--celery-client"), "and the Celery clients' user");
  const dockerfile = await Deno.readTextFile(new URL("../Dockerfile.celery", import.meta.url));
  assert.match(dockerfile, /^ARG CELERY_BASE_IMAGE=debian:trixie-slim$/m);
  assert.match(dockerfile, /apt-get install -y --no-install-recommends python3-celery/);
  assert.match(dockerfile, /^USER 65532:65532$/m, "the owner secrets-init gives workers' files");
  assert.deepEqual(registry.functions.get("task_c"), {
    name: "task_c",
    queue,
    user: "task_c",
    protocol: "celery",
    celeryName: "tasks.task_c",
    service: "worker-celery",
    profile: "celery",
  });
  const example = await Deno.readTextFile(
    new URL("../examples/celery/test-config.yml", import.meta.url),
  );
  assert.equal(parse(example).registry, "../../functions/registry.yaml");
});

Deno.test("compose.yaml rotates every container's log: json-file, 10 MB, three files", () => {
  for (const [name, service] of services) {
    assert.deepEqual(service.logging, {
      driver: "json-file",
      options: { "max-size": "10m", "max-file": "3" },
    }, `${name} cannot fill the host's disk with its output`);
  }
});

Deno.test("compose.yaml's broker runs the management plugin only: no Prometheus endpoint", async () => {
  const mount = "./ops/rabbitmq/enabled_plugins:/etc/rabbitmq/enabled_plugins:ro";
  assert.ok(compose.services.rabbitmq.volumes.includes(mount), "mounts the plugin list read-only");
  const plugins = await Deno.readTextFile(
    new URL("../ops/rabbitmq/enabled_plugins", import.meta.url),
  );
  // An Erlang term file: the one term after the %% comments.
  const terms = plugins.split("\n").filter((line) => !line.startsWith("%")).join("").trim();
  assert.equal(terms, "[rabbitmq_management].");
});
