/**
 * End-to-end: stack.yaml on a single-node Docker Swarm made for the test.
 * `docker stack deploy` runs the broker and the workers with the hardening
 * and limits the file asks for, `deno task dispatch` passes against it,
 * `docker service scale` gives a function three replicas and a load run
 * spreads over all three.
 *
 * Swarm mode changes the shared engine, which other suites use at the same
 * time: the images are built before the swarm exists, a compose project is
 * checked to still work while it does, and the swarm is left (and its
 * gateway bridge removed) in a `finally`, whatever happens. An engine that
 * is in a swarm already is used as it is and left in it.
 */

import assert from "node:assert/strict";
import { loadRegistry } from "../core/registry.ts";
import { deployedFunctions } from "../ops/manifests/generate.ts";
import { eventFlagsOf } from "../ops/manifests/compose_blocks.ts";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { docker, readSecret } from "./_docker.ts";
import { NEEDS_DOCKER } from "./_infra.ts";
import { freePort, uniqueName, waitFor } from "./_helpers.ts";
import { runDeno } from "./_processes.ts";
import { holdEngine } from "./_engine_lock.ts";

const DENO_IMAGE = Deno.env.get("DENO_IMAGE") ?? "denoland/deno:distroless-2.9.6";
const RABBITMQ_IMAGE = Deno.env.get("RABBITMQ_IMAGE") ?? "rabbitmq:4.0.5-management";

/** A compose project on a bridge network: one service serves, the other fetches by name. */
async function composeStillWorks(): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "swarm-compose-" });
  const project = uniqueName("swarmcheck");
  try {
    await Deno.writeTextFile(
      `${dir}/compose.yaml`,
      `services:
  srv:
    image: ${DENO_IMAGE}
    command: ["eval", "Deno.serve({ hostname: '0.0.0.0', port: 8000 }, () => new Response('pong'))"]
  cli:
    image: ${DENO_IMAGE}
    depends_on: [srv]
    command: ["eval", "for (let i = 0; ; i++) { try { console.log('got', await (await fetch('http://srv:8000')).text()); break; } catch (e) { if (i > 50) throw e; await new Promise((r) => setTimeout(r, 200)); } }"]
`,
    );
    const run = await docker(
      [
        "compose",
        "-p",
        project,
        "-f",
        `${dir}/compose.yaml`,
        "up",
        "--abort-on-container-exit",
        "--exit-code-from",
        "cli",
      ],
      {},
      true,
    );
    assert.equal(run.code, 0, run.text);
    assert.match(run.text, /got pong/);
  } finally {
    await docker(["compose", "-p", project, "-f", `${dir}/compose.yaml`, "down"], {}, true);
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "stack.yaml on a one-node swarm: deploy, dispatch, scale a function to 3 and load it",
  ignore: NEEDS_DOCKER,
  async fn() {
    await using _engine = await holdEngine("exclusive");
    const registry = await loadRegistry();
    const functions = deployedFunctions(registry);
    const stack = uniqueName("tasks");
    const prefix = uniqueName("swarmtest");
    const tag = "e2e";
    const amqpPort = freePort();
    const gatewayPort = freePort();
    const secretsDir = await Deno.makeTempDir({ prefix: "swarm-secrets-" });
    const images = functions.map(({ name }) => `${prefix}/worker-${name}:${tag}`);
    const schedulerImage = `${prefix}/scheduler:${tag}`;
    const gatewayImage = `${prefix}/gateway:${tag}`;
    // Built before the swarm exists, to keep the time the engine is in one short.
    for (const [i, { name }] of functions.entries()) {
      await docker([
        "build",
        "-q",
        "-f",
        "Dockerfile.worker",
        "--build-arg",
        `FUNCTION=${name}`,
        "--build-arg",
        `DENO_IMAGE=${DENO_IMAGE}`,
        "-t",
        images[i],
        ".",
      ]);
    }
    for (
      const [file, image] of [["Dockerfile.scheduler", schedulerImage], [
        "Dockerfile.gateway",
        gatewayImage,
      ]]
    ) {
      await docker([
        "build",
        "-q",
        "-f",
        file,
        "--build-arg",
        `DENO_IMAGE=${DENO_IMAGE}`,
        "-t",
        image,
        ".",
      ]);
    }
    const init = await runDeno([
      "run",
      `--allow-read=broker,functions,${secretsDir}`,
      `--allow-write=${secretsDir}`,
      "ops/rabbitmq/secrets_init.ts",
      `--dir=${secretsDir}`,
      ...functions.map(({ name, user = name, queue }) => `--function=${user}=${queue}`),
      // The topic permissions of the functions' events, as compose.yaml's secrets-init has them.
      ...eventFlagsOf([...registry.functions.values()], registry.emitters),
      "--scheduler",
      "--gateway",
    ]);
    assert.equal(init.code, 0, init.stderr);
    // The gateway's keys file, as compose.yaml's gateway-init makes it.
    const keys = await runDeno([
      "run",
      `--allow-read=${secretsDir}`,
      `--allow-write=${secretsDir}`,
      "--allow-env=GATEWAY_KEYS_FILE,SECRETS_DIR",
      "gateway/main.ts",
      "keys",
      "init",
      `--keys-file=${secretsDir}/gateway_keys.json`,
      `--key-out=${secretsDir}/gateway.key`,
      "--functions=*",
    ]);
    assert.equal(keys.code, 0, keys.stderr);
    const id = async (flag: string) =>
      (await docker(["run", "--rm", "--entrypoint", "id", RABBITMQ_IMAGE, flag, "rabbitmq"]))
        .stdout;
    const env = {
      SECRETS_DIR: secretsDir,
      IMAGE_PREFIX: prefix,
      IMAGE_TAG: tag,
      AMQP_PORT: String(amqpPort),
      GATEWAY_PORT: String(gatewayPort),
      RABBITMQ_IMAGE,
      RABBITMQ_UID: await id("-u"),
      RABBITMQ_GID: await id("-g"),
    };
    const state = (await docker(["info", "--format", "{{.Swarm.LocalNodeState}}"])).stdout;
    const ownSwarm = state !== "active";
    const hadGatewayBridge =
      (await docker(["network", "ls", "-q", "-f", "name=^docker_gwbridge$"])).stdout !== "";
    try {
      if (ownSwarm) await docker(["swarm", "init", "--advertise-addr", "127.0.0.1"]);
      await composeStillWorks();

      // AMQP published for this test's dispatcher: the opt-in file over the stack.
      const deployed = await docker(
        ["stack", "deploy", "-c", "stack.yaml", "-c", "stack.publish.yaml", stack],
        env,
      );
      assert.doesNotMatch(deployed.text, /Ignoring unsupported options/, "Swarm honours every key");
      const network = JSON.parse(
        (await docker(["network", "inspect", `${stack}_default`])).stdout,
      )[0];
      assert.equal(network.Driver, "overlay");
      assert.ok("encrypted" in (network.Options ?? {}), "the stack's overlay network is encrypted");
      const container = async (service: string) =>
        (await docker(["ps", "-q", "-f", `name=${stack}_${service}.`])).stdout.split("\n")[0];
      const url = (user: string, password: string) =>
        `amqp://${user}:${encodeURIComponent(password)}@127.0.0.1:${amqpPort}`;
      const admin = url("admin", await readSecret(`${secretsDir}/admin.password`));
      let broker: Awaited<ReturnType<typeof connectAmqp>> | undefined;
      await waitFor(
        async () => {
          broker = await connectAmqp(admin, { timeoutMs: 2000 }).catch(() => undefined);
          return broker !== undefined;
        },
        "the broker accepts connections",
        120_000,
        1000,
      );
      try {
        const consumers = (queue: string, n: number) =>
          waitFor(
            async () => (await broker!.inspectQueue(queue).catch(() => null))?.consumers === n,
            `${n} consumers on ${queue}`,
            120_000,
            500,
          );
        for (const { queue } of functions) await consumers(queue, 1);
        // The scheduler's replicas hold their queue (a quorum queue counts its active consumer).
        await consumers("tasks.scheduler", 1);

        // What Swarm applied: the file's confinement and limits.
        const worker =
          JSON.parse((await docker(["inspect", await container("worker-a")])).stdout)[0];
        assert.equal(worker.HostConfig.ReadonlyRootfs, true);
        assert.deepEqual(worker.HostConfig.CapDrop, ["ALL"]);
        assert.equal(worker.HostConfig.PidsLimit, 128);
        assert.equal(worker.HostConfig.Memory, 256 * 1024 * 1024);
        assert.equal(worker.Config.User, "65532:65532");
        const rotated = { Type: "json-file", Config: { "max-file": "3", "max-size": "10m" } };
        assert.deepEqual(worker.HostConfig.LogConfig, rotated, "the worker's log is rotated");
        const rabbit =
          JSON.parse((await docker(["inspect", await container("rabbitmq")])).stdout)[0];
        assert.equal(rabbit.HostConfig.ReadonlyRootfs, true);
        assert.deepEqual(rabbit.HostConfig.CapDrop, ["ALL"]);
        assert.deepEqual(rabbit.HostConfig.LogConfig, rotated, "the broker's log is rotated");
        const plugins = await docker(
          [
            "exec",
            await container("rabbitmq"),
            "rabbitmq-plugins",
            "list",
            "--enabled",
            "--minimal",
          ],
        );
        assert.deepEqual(
          plugins.stdout.split("\n").filter((line) => /^rabbitmq_/.test(line.trim())),
          ["rabbitmq_management"],
          "no Prometheus endpoint listing queue names on the stack's network",
        );

        const brokerFlag = `amqp://dispatcher@127.0.0.1:${amqpPort}`;
        const dispatch = await runDeno(
          ["task", "dispatch", "--broker", brokerFlag, "--no-save", "--quiet"],
          { SECRETS_DIR: secretsDir },
        );
        assert.equal(dispatch.code, 0, dispatch.stdout + dispatch.stderr);

        // The gateway, published by stack.publish.yaml on GATEWAY_PORT.
        const key = (await Deno.readTextFile(`${secretsDir}/gateway.key`)).trim();
        let answer = "";
        await waitFor(
          async () => {
            try {
              const response = await fetch(`http://127.0.0.1:${gatewayPort}/functions/task_a`, {
                method: "POST",
                headers: { authorization: `Bearer ${key}` },
                body: "{}",
                signal: AbortSignal.timeout(10_000),
              });
              answer = await response.text();
              return response.status === 200;
            } catch {
              return false;
            }
          },
          "task_a through the published gateway",
          120_000,
          1000,
        );
        assert.match(answer, /"result":"Hello from Task A"/);

        await docker(["service", "scale", "--detach", `${stack}_worker-a=3`]);
        await consumers(functions[0].queue, 3);
        const load = await runDeno([
          "task",
          "load",
          "--broker",
          brokerFlag,
          "--function",
          functions[0].name,
          "--work-ms",
          "50",
          "--tasks",
          "150",
          "--concurrency",
          "30",
          "--no-save",
          "--json",
        ], { SECRETS_DIR: secretsDir });
        assert.equal(load.code, 0, load.stderr);
        const perWorker: Record<string, number> = JSON.parse(load.stdout).perWorker;
        console.log(`per worker: ${JSON.stringify(perWorker)}`);
        assert.equal(Object.keys(perWorker).length, 3, "three replicas answered");
        assert.ok(Object.values(perWorker).every((n) => n > 0), "each did its share");
      } finally {
        await broker?.close();
      }
    } finally {
      await docker(["stack", "rm", stack], {}, true);
      await waitFor(
        async () =>
          (await docker(["ps", "-aq", "-f", `label=com.docker.stack.namespace=${stack}`], {}, true))
            .stdout === "",
        "the stack's containers are gone",
        60_000,
        500,
      ).catch((error) => console.error(error));
      if (ownSwarm) {
        await docker(["swarm", "leave", "--force"], {}, true);
        if (!hadGatewayBridge) await docker(["network", "rm", "docker_gwbridge"], {}, true);
      }
      for (const volume of ["rabbitmq-data", "rabbitmq-logs"]) {
        await docker(["volume", "rm", `${stack}_${volume}`], {}, true);
      }
      await docker(["rmi", ...images, schedulerImage, gatewayImage], {}, true);
      await docker(
        [
          "run",
          "--rm",
          "-u",
          "0",
          "-v",
          `${secretsDir}:/s`,
          DENO_IMAGE,
          "eval",
          "for (const e of Deno.readDirSync('/s')) Deno.removeSync('/s/' + e.name)",
        ],
        {},
        true,
      );
      await Deno.remove(secretsDir, { recursive: true }).catch(() => {});
    }
  },
});
