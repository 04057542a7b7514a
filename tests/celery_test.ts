/**
 * Celery interop against the host's RabbitMQ, both ways, in a vhost of its
 * own where every party has the broker user and permissions of
 * ops/rabbitmq/definitions.ts:
 *
 * - the unchanged example Celery 5 client (examples/celery/client.py) calls
 *   the Deno functions with delay(), send_task() and apply_async(), all at
 *   once, sees a failure retried on the Deno side raise in Python, and an
 *   unsupported feature (a chain) refused by name;
 * - a Celery-shaped request that skips the Celery route is dead-lettered as
 *   unauthenticated;
 * - `deno task dispatch` runs a scenario mixing Deno functions and a real
 *   Celery worker (examples/celery/worker_tasks.py), and `deno task status`
 *   shows it; the Celery worker refuses a request from a broker user it
 *   does not serve, and answers an unknown task name with NotRegistered.
 */

import assert from "node:assert/strict";
import { parse, stringify } from "yaml";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { loadRegistry } from "../core/registry.ts";
import { deadLetterQueueOf, encodeCeleryRequest } from "../core/contract/mod.ts";
import { TaskClient } from "../client/task_client.ts";
import type { RunDocument } from "../dispatcher/report/mod.ts";
import type { SystemStatus } from "../dispatcher/gather_status.ts";
import { run } from "../bench/peers/_process.ts";
import {
  assertCeleryHere,
  CELERY_EXAMPLES,
  CELERY_FIXTURES,
  createCeleryVhost,
  NEEDS_CELERY,
  PYTHON,
  startCeleryWorker,
} from "./_celery.ts";
import { waitFor } from "./_helpers.ts";
import { AMQP_URL } from "./_infra.ts";
import { runDeno, startWorkerProcess } from "./_processes.ts";
import { withTempDir } from "./_temp_dir.ts";

/** What examples/celery/client.py prints when every expectation holds, line by line. */
const CLIENT_OUTPUT = [
  /^task_a\.delay: 'Hello from Task A' ok$/,
  /^task_b\.delay: 'Hello from Task B' ok$/,
  /^send_task tasks\.task_a: 'Hello from Task A' ok$/,
  /^apply_async queue_b: 'Hello from Task B' ok$/,
  // task_a's default policy: 3 retries on the Deno side, so the 4th attempt fails for good.
  /^failing call: raised SimulatedFailure: Failing attempt 4 as the payload asks the first 10 to fail$/,
  /^chain: raised NotSupported: Cannot run a Celery task with 'chain': /,
];

Deno.test({
  name: "Celery interop: Celery clients call Deno functions, the dispatcher calls a Celery worker",
  ignore: NEEDS_CELERY,
  async fn(t) {
    assertCeleryHere();
    const vhost = await createCeleryVhost("celery_it");
    const { users } = vhost;
    const stops: (() => Promise<unknown>)[] = [];
    try {
      // The Deno workers run requests from this vhost's dispatcher (and Celery clients, by route).
      const denoEnv = { ALLOWED_SENDERS: users.dispatcher };
      const workerA = await startWorkerProcess("task_a", {
        ...denoEnv,
        AMQP_URL: vhost.url(users.task_a),
      });
      stops.push(() => workerA.stop());
      const workerB = await startWorkerProcess("task_b", {
        ...denoEnv,
        AMQP_URL: vhost.url(users.task_b),
      });
      stops.push(() => workerB.stop());
      const celery = await startCeleryWorker(vhost, {
        url: vhost.url(users.task_c),
        queue: "queue_c",
        allowedSenders: users.dispatcher,
      });
      stops.push(() => celery.stop());

      await t.step("the unchanged Celery client calls both Deno functions", async () => {
        const client = await run(PYTHON, ["client.py"], {
          cwd: CELERY_EXAMPLES,
          env: { CELERY_BROKER_URL: vhost.url(users.client), PYTHONDONTWRITEBYTECODE: "1" },
          timeoutMs: 120_000,
        });
        const lines = client.stdout.split("\n");
        assert.equal(lines.length, CLIENT_OUTPUT.length, `${client.stdout}\n${client.stderr}`);
        CLIENT_OUTPUT.forEach((pattern, i) => assert.match(lines[i], pattern));
        assert.ok(client.success, client.stderr);
        // The failing call's retries ran on the Deno side, each a Celery request of task_a.
        const retried = workerA.lines.filter((line) =>
          line.includes('"msg":"Task failed; retrying"') && line.includes('"protocol":"celery"')
        );
        assert.equal(retried.length, 3, workerA.lines.join("\n"));
      });

      await t.step(
        "a Celery request that skips the Celery route is refused as unauthenticated",
        async () => {
          // task_b's user may publish through the default exchange, as every worker may.
          const intruder = await connectAmqp(vhost.url(users.task_b), {
            connectionName: "intruder",
          });
          const admin = await vhost.admin();
          try {
            await intruder.publish(
              "queue_a",
              encodeCeleryRequest("tasks.task_a", { work_ms: 0 }, { taskId: "sneaky" }),
            );
            let reason: unknown;
            await waitFor(
              async () => {
                const letter = await admin.get(deadLetterQueueOf("queue_a"));
                if (letter?.properties.correlationId === "sneaky") {
                  reason = letter.properties.headers?.["x-dlq-reason"];
                }
                if (letter) admin.ack(letter);
                return reason !== undefined;
              },
              "the refused request in queue_a.dlq",
              20_000,
              100,
            );
            assert.equal(reason, "unauthenticated");
          } finally {
            await intruder.close();
            await admin.close();
          }
        },
      );

      const edges = async (user: string, ...args: string[]) => {
        const client = await run(PYTHON, [`${CELERY_FIXTURES}client_edges.py`, ...args], {
          cwd: CELERY_EXAMPLES,
          env: {
            CELERY_BROKER_URL: user,
            PYTHONPATH: CELERY_EXAMPLES.pathname,
            PYTHONDONTWRITEBYTECODE: "1",
          },
          timeoutMs: 120_000,
        });
        assert.ok(client.success, `${client.stdout}\n${client.stderr}`);
        return client.stdout.split("\n");
      };

      await t.step(
        "a Celery time_limit, else soft_time_limit, caps the attempt of a Deno function",
        async () => {
          // 3 s of work as the last attempt: only a limit of 1 s makes it fail.
          const lines = await edges(vhost.url(users.client), "limits");
          assert.equal(lines.length, 3, lines.join("\n"));
          assert.match(lines[0], /^time_limit=1: raised TaskTimeout: /);
          assert.match(lines[1], /^soft_time_limit=1: raised TaskTimeout: /);
          assert.equal(
            lines[2],
            "time_limit=60 soft_time_limit=1: returned 'Hello from Task A'",
            "time_limit (hard) wins over soft_time_limit",
          );
        },
      );

      await t.step("ignore_result=True: the task runs and no reply is sent", async () => {
        const client = await connectAmqp(vhost.url(users.client), {
          connectionName: "celery-test",
        });
        const replies = crypto.randomUUID();
        try {
          await client.declareQueue(replies);
          const request = (taskId: string, ignoreResult: boolean) => {
            const message = encodeCeleryRequest("tasks.task_a", { work_ms: 0 }, {
              taskId,
              replyTo: replies,
            });
            message.properties.headers!.ignore_result = ignoreResult;
            return message;
          };
          // One worker, one task at a time: the first is settled, its reply
          // (if any) confirmed, before the second is delivered.
          await client.publishToExchange("queue_a", request("ignored", true), "queue_a");
          await client.publishToExchange("queue_a", request("answered", false), "queue_a");
          await waitFor(
            async () => ((await client.inspectQueue(replies))?.messages ?? 0) > 0,
            "the second task's reply",
            20_000,
            100,
          );
          const first = await client.get(replies);
          assert.equal(first?.properties.correlationId, "answered", "no reply came before it");
          client.ack(first!);
          assert.equal(await client.get(replies), null);
          assert.ok(
            workerA.lines.some((line) =>
              line.includes('"msg":"Task succeeded"') && line.includes('"task_id":"ignored"')
            ),
            "the task whose result is ignored ran",
          );
        } finally {
          await client.deleteQueue(replies).catch(() => {});
          await client.close();
        }
      });

      await t.step(
        "a result backend other than rpc:// gets no result, though the task runs",
        async () => {
          const taskId = crypto.randomUUID();
          const lines = await edges(vhost.url(users.client), "backend", taskId);
          assert.deepEqual(lines, ["cache backend: no result (TimeoutError)"]);
          assert.ok(
            workerA.lines.some((line) =>
              line.includes('"msg":"Task succeeded"') && line.includes(`"task_id":"${taskId}"`)
            ),
            "the task ran on the Deno worker",
          );
        },
      );

      await t.step(
        "Celery's remote control: refused to celery_client; for a user allowed it, Deno workers neither answer nor obey it",
        async () => {
          const refused = await edges(vhost.url(users.client), "control");
          assert.match(
            refused[0],
            /^inspect ping: raised AccessRefused: .*ACCESS_REFUSED .*celery\.pidbox/,
            refused.join("\n"),
          );
          assert.match(refused[1], /^revoke: raised AccessRefused: .*'celery\.pidbox'/);
          // An administrator may use it: no worker answers the ping (the Deno
          // workers do not listen, the example Celery worker's user may not),
          // and the revoked task still runs on the Deno worker.
          const allowed = await edges(
            vhost.url(decodeURIComponent(new URL(AMQP_URL).username)),
            "control",
          );
          assert.equal(allowed[0], "inspect ping: None", allowed.join("\n"));
          assert.equal(allowed[1], "revoke: None");
          assert.equal(allowed[2], "revoked task: returned 'Hello from Task A'");
        },
      );

      await withTempDir(async (dir) => {
        // The repository's mixed scenarios, over its registry's functions with this
        // vhost's broker users: a file of their own, away from the registry.
        const config = parse(
          await Deno.readTextFile(new URL("test-config.yml", CELERY_EXAMPLES)),
        );
        const registry = await loadRegistry(
          decodeURIComponent(new URL("../functions/registry.yaml", import.meta.url).pathname),
        );
        delete config.registry;
        config.functions = {};
        for (const fn of ["task_a", "task_b", "task_c"] as const) {
          const { queue, protocol, celeryName } = registry.functions.get(fn)!;
          config.functions[fn] = protocol === "celery"
            ? { queue, user: users[fn], protocol, celery_name: celeryName }
            : { queue, user: users[fn] };
        }
        const file = `${dir}/celery.yml`;
        await Deno.writeTextFile(file, stringify(config));
        const env = { AMQP_URL: vhost.url(users.dispatcher) };
        const dispatch = async (scenario: string) => {
          const result = await runDeno(
            ["task", "dispatch", "--config", file, "--scenario", scenario, "--json", "--no-save"],
            env,
          );
          assert.ok(result.stdout.startsWith("{"), result.stderr);
          return { code: result.code, document: JSON.parse(result.stdout) as RunDocument, result };
        };

        await t.step(
          "deno task dispatch runs Deno functions and a Celery worker in one scenario",
          async () => {
            const { code, document, result } = await dispatch("mixed");
            assert.equal(code, 0, result.stderr);
            const outcomes = Object.fromEntries(
              document.tasks.map((task) => [task.label, [task.status, task.result, task.attempts]]),
            );
            assert.deepEqual(outcomes, {
              task_a: ["success", "Hello from Task A", 1],
              task_b: ["success", "Hello from Task B", 1],
              task_c: ["success", "Hello from Task C", 1],
            });
            const taskC = document.tasks.find((task) => task.label === "task_c")!;
            assert.equal(taskC.worker, `celery_c@${vhost.name}`, "named by its STARTED result");
            assert.match(result.stderr, /task_c: Celery task tasks\.task_c on queue_c, 1 consumer/);
          },
        );

        await t.step(
          "the dispatcher retries a failing Celery task, and reports its failure",
          async () => {
            const { code, document } = await dispatch("celery_retries");
            assert.equal(code, 0, JSON.stringify(document.tasks, null, 2));
            const [recovered, exhausted] = document.tasks;
            assert.deepEqual([recovered.status, recovered.result, recovered.attempts], [
              "success",
              "Hello from Task C",
              3,
            ]);
            assert.deepEqual([exhausted.status, exhausted.error?.type, exhausted.attempts], [
              "error",
              "SimulatedFailure",
              2,
            ]);
            assert.equal(document.summary.retries.task_c, 3);
          },
        );

        await t.step(
          "deno task status counts the Celery worker by its queue's consumers",
          async () => {
            const status = await runDeno(["task", "status", "--config", file, "--json"], env);
            assert.equal(status.code, 0, status.stdout + status.stderr);
            const queues = (JSON.parse(status.stdout) as SystemStatus).queues;
            assert.deepEqual(queues.map((q) => [q.function, q.protocol, q.workers]), [
              ["task_a", "native", 1],
              ["task_b", "native", 1],
              ["task_c", "celery", 1],
            ]);
          },
        );
      });

      await t.step(
        "the Celery worker runs nothing for a sender it does not serve, or a name it lacks",
        async () => {
          const route = {
            queue: "queue_c",
            user: users.task_c,
            protocol: "celery" as const,
            celeryName: "tasks.task_c",
          };
          const call = async (user: string, celeryName: string) => {
            const broker = await connectAmqp(vhost.url(user), { connectionName: "celery-test" });
            const client = await TaskClient.open(broker, {
              functions: new Map([["task_c", { ...route, celeryName }]]),
            });
            try {
              return await client.request("task_c", { work_ms: 0 }, {
                timeoutMs: 20_000,
                retry: { max_retries: 2, base_delay_ms: 1 },
              });
            } finally {
              await client.close();
              await broker.close();
            }
          };
          const intruder = await call(users.task_b, "tasks.task_c");
          assert.equal(intruder.kind, "reply");
          if (intruder.kind !== "reply") return;
          assert.equal(intruder.reply.error?.type, "Unauthenticated");
          assert.match(intruder.reply.error!.message, new RegExp(`'${users.task_b}'`));
          assert.equal(intruder.reply.attempts, 1, "not retried");
          const unknown = await call(users.dispatcher, "tasks.task_z");
          assert.equal(unknown.kind, "reply");
          if (unknown.kind !== "reply") return;
          assert.equal(unknown.reply.error?.type, "NotRegistered");
          assert.equal(unknown.reply.attempts, 1, "not retried");
        },
      );
    } finally {
      for (const stop of stops.reverse()) await stop().catch(() => {});
      await vhost.close();
    }
  },
});
