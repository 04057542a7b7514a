/**
 * The scheduler's deployments, checked without Docker: its image
 * (Dockerfile.scheduler, its own lockfile in sync), its two replicas in
 * compose.yaml, on every node in compose.cluster.yaml, and in stack.yaml,
 * each confined like a worker, with a broker user and password of its own.
 * tests/scheduler_e2e_test.ts runs the compose stack's.
 */

import assert from "node:assert/strict";
import { parse } from "yaml";
import { CLUSTER_NODES } from "../ops/manifests/compose_blocks.ts";
import { readComposeFile } from "./_docker.ts";

const ROOT = new URL("../", import.meta.url);
const read = (path: string) => Deno.readTextFile(new URL(path, ROOT));
// deno-lint-ignore no-explicit-any
type Service = any;

const compose = await readComposeFile();
const cluster = parse(await read("compose.cluster.yaml"), { merge: true });
const stack = parse(await read("stack.yaml"), { merge: true });
const dockerfile = await read("Dockerfile.scheduler");
const schedulers = Object.entries(compose.services as Record<string, Service>).filter((
  [, service],
) => service.build?.dockerfile === "Dockerfile.scheduler");

/** The values of `--flag=a,b` in an exec-form command. */
function flagValues(command: string[], flag: string): string[] {
  const found = command.find((arg) => arg.startsWith(`--${flag}=`));
  assert.ok(found, `--${flag} is given`);
  return found.slice(flag.length + 3).split(",");
}

/** The JSON array of the Dockerfile instruction `name` (CMD, RUN, HEALTHCHECK's CMD). */
function instruction(name: string): string[] {
  const match = dockerfile.match(new RegExp(`^${name} (\\[[^\\]]*\\])`, "m"));
  assert.ok(match, `a ${name} in exec form`);
  return JSON.parse(match[1].replaceAll("\\\n", ""));
}

Deno.test("Dockerfile.scheduler: non-root, dependencies cached at build, the broker and the registry only", async () => {
  assert.match(dockerfile, /^ARG DENO_IMAGE=denoland\/deno:distroless-2\.9\.6$/m);
  assert.match(dockerfile, /^USER 65532:65532$/m);
  assert.match(dockerfile, /^COPY scheduler\.deno\.json \.\/deno\.json$/m);
  assert.match(dockerfile, /^COPY functions\/registry\.yaml functions\/registry\.yaml$/m);
  assert.doesNotMatch(dockerfile, /^COPY (runtime|functions)\/ /m, "no runtime, no function code");
  const run = instruction("RUN");
  assert.deepEqual(run.slice(0, 3), ["deno", "cache", "--frozen"]);
  assert.ok(run.includes("scheduler/main.ts") && run.includes("scheduler/health.ts"));
  const cmd = instruction("CMD");
  assert.ok(cmd.includes("--cached-only"));
  assert.deepEqual(flagValues(cmd, "allow-net"), ["rabbitmq:5672", "0.0.0.0:9465"]);
  assert.deepEqual(flagValues(cmd, "allow-read"), [
    "/app/functions/registry.yaml",
    "/run/secrets/amqp_url",
    "/run/secrets/amqp_password",
    "/run/secrets/amqp_ca.pem",
    "/run/secrets/amqp_cert.pem",
    "/run/secrets/amqp_key.pem",
  ]);
  assert.ok(!cmd.some((arg) => /^--allow-(write|run|ffi|all)/.test(arg)), "no write, run or ffi");
  assert.match(dockerfile, /HEALTHCHECK .*\n\s+CMD \["\/bin\/deno", "run", "--cached-only"/);
  const ignored = (await read(".dockerignore")).split("\n");
  for (const path of ["!scheduler.deno.json", "!scheduler.deno.lock", "!scheduler/"]) {
    assert.ok(ignored.includes(path), `.dockerignore lets ${path} in`);
  }
});

Deno.test("the scheduler runs with its image's permissions: it reads its registry and the variables it may", async () => {
  const cmd = instruction("CMD");
  const registry = await Deno.makeTempFile({ suffix: ".yaml" });
  try {
    await Deno.writeTextFile(
      registry,
      'functions:\n  report: { queue: reports, schedule: "@daily" }\n',
    );
    const listed = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        `--allow-env=${flagValues(cmd, "allow-env").join(",")}`,
        `--allow-read=${registry}`,
        "scheduler/main.ts",
        "--list",
        `--registry=${registry}`,
      ],
      cwd: ROOT,
      signal: AbortSignal.timeout(120_000),
    }).output();
    const text = new TextDecoder().decode(listed.stdout) + new TextDecoder().decode(listed.stderr);
    assert.equal(listed.code, 0, text);
    assert.match(text, /^report on reports: @daily \(UTC\)/m);
  } finally {
    await Deno.remove(registry);
  }
});

Deno.test("the scheduler image's config pins what deno.json does, and its lockfile is in sync", async () => {
  const project = JSON.parse(await read("deno.json"));
  const image = JSON.parse(await read("scheduler.deno.json"));
  for (const [name, specifier] of Object.entries(image.imports)) {
    assert.equal(specifier, project.imports[name], `${name} is the same in both`);
  }
  // Frozen: fails if the lockfile would have to change, as the image build would.
  const cached = await new Deno.Command(Deno.execPath(), {
    args: [
      "cache",
      "--frozen",
      "--config",
      "scheduler.deno.json",
      "scheduler/main.ts",
      "scheduler/health.ts",
    ],
    cwd: ROOT,
    signal: AbortSignal.timeout(120_000),
  }).output();
  assert.equal(
    cached.code,
    0,
    `scheduler.deno.lock is out of date: run 'deno task lock:scheduler'\n${
      new TextDecoder().decode(cached.stderr)
    }`,
  );
});

Deno.test("compose.yaml runs two scheduler replicas, confined like the workers, each as the scheduler's user", () => {
  assert.deepEqual(schedulers.map(([name]) => name), ["scheduler-1", "scheduler-2"]);
  for (const [name, service] of schedulers) {
    assert.equal(service.read_only, true, `${name} read_only`);
    assert.deepEqual(service.cap_drop, ["ALL"], name);
    assert.equal(service.cap_add, undefined, name);
    assert.deepEqual(service.security_opt, ["no-new-privileges:true"], name);
    assert.match(String(service.mem_limit), /^\d+m$/, name);
    assert.ok(service.pids_limit > 0 && service.pids_limit <= 256, name);
    assert.equal(service.user, undefined, `${name} runs as the image's non-root user`);
    assert.equal(service.ports, undefined, `${name} publishes nothing`);
    assert.deepEqual(service.logging, {
      driver: "json-file",
      options: { "max-size": "10m", "max-file": "3" },
    }, `${name} rotates its log`);
    assert.equal(service.depends_on.rabbitmq.condition, "service_healthy");
    assert.ok(service.restart, `${name} restarts`);
    assert.equal(service.environment.AMQP_URL, "amqp://scheduler@rabbitmq:5672");
    assert.equal(service.environment.AMQP_PASSWORD_FILE, "/run/secrets/amqp_password");
    assert.deepEqual(service.secrets, [{ source: "scheduler_password", target: "amqp_password" }]);
    assert.deepEqual(service.healthcheck.test.slice(-2), ["scheduler/health.ts", "9465"]);
  }
  assert.equal(
    compose.secrets.scheduler_password.file,
    "${SECRETS_DIR:-./secrets}/scheduler.password",
  );
  assert.ok(compose.services["secrets-init"].command.includes("--scheduler"));
});

Deno.test("compose.cluster.yaml runs each scheduler on every node, starting from another one", () => {
  const urls = ["scheduler-1", "scheduler-2"].map((name) => {
    const service = cluster.services[name];
    assert.ok(service, `${name} is in compose.cluster.yaml`);
    const image = instruction("CMD");
    for (const flag of ["allow-env", "allow-read", "allow-sys"]) {
      assert.deepEqual(
        flagValues(service.command, flag),
        flagValues(image, flag),
        `${name} --${flag}`,
      );
    }
    assert.deepEqual(
      service.command.slice(-2),
      image.slice(-2),
      `${name} runs what the image runs`,
    );
    const allowed = flagValues(service.command, "allow-net");
    assert.deepEqual(allowed, [...CLUSTER_NODES.map((node) => `${node}:5672`), "0.0.0.0:9465"]);
    for (const node of CLUSTER_NODES) {
      assert.equal(service.depends_on[node].condition, "service_healthy", `${name} waits ${node}`);
    }
    return service.environment.AMQP_URL.split(",");
  });
  for (const list of urls) assert.equal(list.length, CLUSTER_NODES.length);
  assert.notEqual(urls[0][0], urls[1][0], "each replica starts from a node of its own");
});

Deno.test("stack.yaml runs the scheduler with two replicas spread over the nodes, and its own secret", () => {
  const service = stack.services.scheduler;
  assert.equal(service.deploy.replicas, 2);
  assert.deepEqual(service.deploy.placement.preferences, [{ spread: "node.id" }]);
  assert.match(service.image, /^\$\{IMAGE_PREFIX:-task-system\}\/scheduler:\$\{IMAGE_TAG:\?/);
  assert.deepEqual(service.secrets, [{
    source: "scheduler_password",
    target: "amqp_password",
    uid: "65532",
    gid: "65532",
    mode: 0o400,
  }]);
  assert.equal(
    stack.secrets.scheduler_password.file,
    "${SECRETS_DIR:-./secrets}/scheduler.password",
  );
});
