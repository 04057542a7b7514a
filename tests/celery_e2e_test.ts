/**
 * End to end, Celery interop in the compose stack with the profile
 * `celery` (RabbitMQ 4.0, the Deno workers and the Celery worker image
 * built from Debian's python3-celery): the unchanged example Celery client
 * on the host calls the Deno functions as the stack's `celery_client`, and
 * `deno task dispatch` runs the mixed scenario of
 * examples/celery/test-config.yml as the stack's dispatcher.
 *
 * No registry is reachable here: the Celery image builds on
 * `CELERY_BASE_IMAGE`, else on the provisioned RabbitMQ stand-in when that
 * is a local image (Debian trixie with apt), as docs/celery.md says.
 */

import assert from "node:assert/strict";
import type { RunDocument } from "../dispatcher/report/mod.ts";
import type { SystemStatus } from "../dispatcher/gather_status.ts";
import { run } from "../bench/peers/_process.ts";
import { assertCeleryHere, CELERY_EXAMPLES, CELERY_MISSING, PYTHON } from "./_celery.ts";
import { connectWhenUp, createStack, type Stack } from "./_compose.ts";
import { readSecret } from "./_docker.ts";
import { waitFor } from "./_helpers.ts";
import { IN_CI, NEEDS_DOCKER } from "./_infra.ts";
import { runDeno } from "./_processes.ts";
import { holdEngine } from "./_engine_lock.ts";

/** The base of the Celery image: CELERY_BASE_IMAGE, else a local RabbitMQ stand-in. */
function celeryBaseImage(): string | undefined {
  const given = Deno.env.get("CELERY_BASE_IMAGE");
  if (given) return given;
  const rabbitmq = Deno.env.get("RABBITMQ_IMAGE");
  return rabbitmq?.startsWith("local/") ? rabbitmq : undefined;
}

const CONFIG = "examples/celery/test-config.yml";

Deno.test({
  name:
    "compose stack, profile celery: a Celery client calls Deno functions, the dispatcher a Celery worker",
  ignore: NEEDS_DOCKER || (!IN_CI && CELERY_MISSING !== undefined),
  async fn(t) {
    await using _engine = await holdEngine("shared");
    assertCeleryHere();
    const base = celeryBaseImage();
    const stack: Stack = await createStack("celery-e2e", {
      env: base ? { CELERY_BASE_IMAGE: base } : {},
    });
    const compose = (args: string[], allowFailure = false) =>
      stack.compose(["--profile", "celery", ...args], allowFailure);
    try {
      // The Celery image installs Debian packages as it builds: more time than docker()'s default.
      await stack.compose(["--profile", "celery", "up", "-d", "--build"], { timeoutMs: 1_200_000 });
      const admin = await connectWhenUp(await stack.url("admin"));
      try {
        await waitFor(
          async () => {
            for (const queue of ["queue_a", "queue_b", "queue_c"]) {
              if (((await admin.inspectQueue(queue))?.consumers ?? 0) === 0) return false;
            }
            return true;
          },
          "a consumer on queue_a, queue_b and queue_c",
          120_000,
          500,
        );
      } finally {
        await admin.close();
      }

      await t.step("the Celery worker runs confined, as its own broker user", async () => {
        const [id] = await stack.containers("worker-celery");
        const container = await stack.inspect(id);
        assert.equal(container.Config.User, "65532:65532");
        assert.equal(container.HostConfig.ReadonlyRootfs, true);
        assert.deepEqual(container.HostConfig.CapDrop, ["ALL"]);
        assert.deepEqual(container.HostConfig.SecurityOpt, ["no-new-privileges:true"]);
        const logs = (await stack.compose(["logs", "--no-color", "worker-celery"])).text;
        assert.match(logs, /Connected to amqp:\/\/task_c:\*\*@rabbitmq:5672\/\//);
        assert.doesNotMatch(logs, /superuser privileges/);
      });

      await t.step(
        "the unchanged Celery client calls task_a and task_b as celery_client",
        async () => {
          const password = await readSecret(`${stack.secretsDir}/celery_client.password`);
          const url = `amqp://celery_client:${
            encodeURIComponent(password)
          }@127.0.0.1:${stack.amqpPort}//`;
          const client = await run(PYTHON, ["client.py"], {
            cwd: CELERY_EXAMPLES,
            env: { CELERY_BROKER_URL: url, PYTHONDONTWRITEBYTECODE: "1" },
            timeoutMs: 120_000,
          });
          assert.ok(client.success, `${client.stdout}\n${client.stderr}`);
          assert.deepEqual(client.stdout.split("\n").map((line) => line.split(":")[0]), [
            "task_a.delay",
            "task_b.delay",
            "send_task tasks.task_a",
            "apply_async queue_b",
            "failing call",
            "chain",
          ]);
          assert.match(client.stdout, /^task_a\.delay: 'Hello from Task A' ok$/m);
          assert.match(client.stdout, /^apply_async queue_b: 'Hello from Task B' ok$/m);
          assert.match(
            client.stdout,
            /^failing call: raised SimulatedFailure: Failing attempt 4 /m,
          );
          assert.match(client.stdout, /^chain: raised NotSupported: .*'chain'/m);
          assert.ok(!(client.stdout + client.stderr).includes(password));
        },
      );

      await t.step("deno task dispatch runs the mixed scenario, Deno and Celery", async () => {
        const broker = ["--broker", `amqp://dispatcher@127.0.0.1:${stack.amqpPort}`];
        const dispatch = await runDeno(
          ["task", "-q", "dispatch", "--config", CONFIG, ...broker, "--json", "--no-save"],
          stack.env,
        );
        assert.equal(dispatch.code, 0, dispatch.stdout + dispatch.stderr);
        const document: RunDocument = JSON.parse(dispatch.stdout);
        assert.deepEqual(
          document.tasks.map((task) => [task.label, task.result, task.attempts]),
          [
            ["task_a", "Hello from Task A", 1],
            ["task_b", "Hello from Task B", 1],
            ["task_c", "Hello from Task C", 1],
          ],
        );
        const [, , taskC] = document.tasks;
        const [celeryId] = await stack.containers("worker-celery");
        assert.equal(taskC.worker, `celery@${celeryId.slice(0, 12)}`, "its container's host name");
        const retries = await runDeno(
          ["task", "-q", "dispatch", "--config", CONFIG, ...broker, "--scenario", "celery_retries"],
          stack.env,
        );
        assert.equal(retries.code, 0, retries.stdout + retries.stderr);
        assert.match(retries.stdout, /^Result from task_c#1: Hello from Task C .*attempts: 3,/m);
        assert.match(retries.stdout, /^Error from task_c#2: SimulatedFailure: .*attempts: 2,/m);
        const status = await runDeno(
          ["task", "-q", "status", "--config", CONFIG, "--json", ...broker],
          stack.env,
        );
        assert.equal(status.code, 0, status.stdout + status.stderr);
        const system: SystemStatus = JSON.parse(status.stdout);
        assert.deepEqual(system.queues.map((q) => [q.function, q.protocol, q.workers]), [
          ["task_a", "native", 1],
          ["task_b", "native", 1],
          ["task_c", "celery", 1],
        ]);
      });
    } finally {
      await compose(["down", "-v", "--rmi", "local", "--remove-orphans"], true);
      await stack.down();
    }
  },
});
