/**
 * End to end: the containers from compose.yaml, driven the way a user drives
 * them: `docker compose up -d --build`, then `deno task dispatch`, then
 * `docker compose down -v`. The stack gets a project name, ports and a
 * secrets directory of its own, so it never touches a stack or broker
 * already running on the machine.
 *
 * One stack serves every check (the machine has 2 cores). To compose.yaml it
 * adds, by an override file made here: a TLS listener on the broker that
 * requires client certificates (throwaway certificates from openssl), and a
 * worker of the sandbox fixture (tests/fixtures/functions/escape.ts) built
 * into the real worker image, connecting over TLS.
 */

import assert from "node:assert/strict";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import type { Broker, Delivery } from "../core/broker/mod.ts";
import type { TaskReply } from "../core/contract/mod.ts";
import { WORKER_IMAGE_FILES } from "../runtime/defaults.ts";
import { TaskClient } from "../client/task_client.ts";
import type { RunDocument } from "../dispatcher/report/mod.ts";
import type { SystemStatus } from "../dispatcher/gather_status.ts";
import { parsePrometheus } from "./_prometheus.ts";
import {
  type CommandOutput,
  docker,
  readComposeFile,
  readSecret,
  workerCommand,
} from "./_docker.ts";
import { NEEDS_DOCKER } from "./_infra.ts";
import { freePort, uniqueName, waitFor } from "./_helpers.ts";
import { runDeno } from "./_processes.ts";
import { makeTestPki, type TestPki } from "./_tls.ts";
import { holdEngine } from "./_engine_lock.ts";

const ROOT = new URL("../", import.meta.url);
const WORKERS = ["worker-a", "worker-b", "worker-escape"];

/** The broker's TLS listener: verify clients, and refuse those without a certificate. */
const TLS_CONF = `listeners.ssl.default = 5671
ssl_options.cacertfile = /etc/rabbitmq/tls/ca.pem
ssl_options.certfile = /etc/rabbitmq/tls/server.pem
ssl_options.keyfile = /etc/rabbitmq/tls/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
`;

/** compose.yaml's worker-a, turned into a worker of the sandbox fixture over TLS. */
async function overrideFile(dir: string, secretsDir: string, pki: TestPki, amqpsPort: number) {
  const base = await readComposeFile();
  const workerA = base.services["worker-a"];
  // task_a's events are not the fixture's: its user may bind and emit none.
  const { FUNCTION_TRIGGERS: _triggers, FUNCTION_EMITS: _emits, ...escapeEnvironment } =
    workerA.environment;
  const command = (await workerCommand()).map((arg) =>
    arg.startsWith("--allow-net=") ? "--allow-net=rabbitmq:5671,0.0.0.0:9464" : arg
  );
  const { environment: _, secrets: __, build, ...confinement } = workerA;
  return {
    services: {
      "secrets-init": {
        command: [...base.services["secrets-init"].command, "--function=escape=queue_escape"],
      },
      rabbitmq: {
        ports: [`127.0.0.1:${amqpsPort}:5671`],
        volumes: [
          `${dir}/tls:/etc/rabbitmq/tls:ro`,
          `${dir}/tls/30-tls.conf:/etc/rabbitmq/conf.d/30-tls.conf:ro`,
        ],
      },
      "worker-escape": {
        ...confinement,
        build: {
          ...build,
          args: { ...build.args, FUNCTION: "escape", FUNCTIONS_DIR: "tests/fixtures/functions" },
        },
        environment: {
          ...escapeEnvironment,
          AMQP_URL: "amqps://escape@rabbitmq:5671",
          // What worker-a's deployment says it runs, now the fixture's.
          FUNCTION_NAME: "escape",
          FUNCTION_QUEUE: "queue_escape",
          AMQP_CA_FILE: WORKER_IMAGE_FILES.AMQP_CA_FILE,
          AMQP_CERT_FILE: WORKER_IMAGE_FILES.AMQP_CERT_FILE,
          AMQP_KEY_FILE: WORKER_IMAGE_FILES.AMQP_KEY_FILE,
        },
        secrets: [
          { source: "escape_password", target: "amqp_password" },
          { source: "e2e_ca", target: "amqp_ca.pem" },
          { source: "e2e_client_cert", target: "amqp_cert.pem" },
          { source: "e2e_client_key", target: "amqp_key.pem" },
        ],
        command,
      },
    },
    secrets: {
      escape_password: { file: `${secretsDir}/escape.password` },
      e2e_ca: { file: pki.ca },
      e2e_client_cert: { file: pki.clientCert },
      e2e_client_key: { file: pki.clientKey },
    },
  };
}

/** Takes letters from `dlq` until the one with correlation id `id`; fails after a while. */
async function waitForLetter(broker: Broker, dlq: string, id: string): Promise<Delivery> {
  let found: Delivery | undefined;
  await waitFor(
    async () => {
      const letter = await broker.get(dlq);
      if (!letter) return false;
      if (letter.properties.correlationId === id) found = letter;
      broker.nack(letter, letter.properties.correlationId !== id);
      return found !== undefined;
    },
    `the letter ${id} in ${dlq}`,
    20_000,
    200,
  );
  return found!;
}

/** What a broker operation did: "ok", or the error's message. */
async function attempt(url: string, operation: (broker: Broker) => Promise<unknown>) {
  let broker: Broker;
  try {
    broker = await connectAmqp(url, { connectionName: "e2e-test", timeoutMs: 5000 });
  } catch (error) {
    return (error as Error).message;
  }
  try {
    await operation(broker);
    return "ok";
  } catch (error) {
    return (error as Error).message;
  } finally {
    await broker.close();
  }
}

Deno.test({
  name: "compose stack: least privilege on the broker, secrets, TLS and the worker sandbox",
  ignore: NEEDS_DOCKER,
  async fn(t) {
    await using _engine = await holdEngine("shared");
    const project = uniqueName("e2e");
    const dir = await Deno.makeTempDir({ prefix: "e2e-" });
    const secretsDir = `${dir}/secrets`;
    await Deno.mkdir(`${dir}/tls`, { recursive: true });
    await Deno.mkdir(secretsDir);
    const pki = await makeTestPki(`${dir}/tls`, ["rabbitmq", "localhost"]);
    await Deno.writeTextFile(`${dir}/tls/30-tls.conf`, TLS_CONF);
    const [amqpPort, managementPort, amqpsPort] = [freePort(), freePort(), freePort()];
    await Deno.writeTextFile(
      `${dir}/override.json`,
      JSON.stringify(await overrideFile(dir, secretsDir, pki, amqpsPort), null, 2),
    );
    // An operator's own password for task_a; secrets-init makes the others.
    const taskAPassword = `given-${crypto.randomUUID()}`;
    await Deno.writeTextFile(`${secretsDir}/task_a.password`, `${taskAPassword}\n`);
    const env = {
      AMQP_PORT: String(amqpPort),
      MANAGEMENT_PORT: String(managementPort),
      SECRETS_DIR: secretsDir,
    };
    // Every output of the run, searched for passwords at the end.
    const outputs: string[] = [];
    const keep = <T extends CommandOutput | { stdout: string; stderr: string }>(output: T) => {
      outputs.push("text" in output ? output.text : output.stdout + output.stderr);
      return output;
    };
    const compose = async (args: string[], allowFailure = false) =>
      keep(
        await docker(
          ["compose", "-p", project, "-f", "compose.yaml", "-f", `${dir}/override.json`, ...args],
          env,
          allowFailure,
        ),
      );
    const dispatch = async (args: string[], extra: Record<string, string> = {}) =>
      keep(await runDeno(["task", "dispatch", ...args], { SECRETS_DIR: secretsDir, ...extra }));
    const plain = (user: string, password: string) =>
      `amqp://${user}:${encodeURIComponent(password)}@127.0.0.1:${amqpPort}`;
    const containersOf = async (service: string) =>
      (await compose(["ps", "-q", service])).stdout.split("\n").filter(Boolean);
    const containerOf = async (service: string) => (await containersOf(service))[0];
    const inspect = async (id: string) => JSON.parse(keep(await docker(["inspect", id])).stdout)[0];

    try {
      // Two replicas of worker-a: workers publish no host port, so they scale.
      await compose(["up", "-d", "--build", "--scale", "worker-a=2"]);
      const passwords: Record<string, string> = {};
      for (const user of ["admin", "dispatcher", "operator", "task_a", "task_b", "escape"]) {
        passwords[user] = await readSecret(`${secretsDir}/${user}.password`);
      }
      assert.equal(passwords.task_a, taskAPassword, "secrets-init keeps a given password");
      // Each worker turns healthy through the image's HEALTHCHECK (GET /healthz
      // answers 200 once it consumes): then every replica is there to answer.
      const healthy = [...await containersOf("worker-a"), await containerOf("worker-b")];
      assert.equal(healthy.length, 3);
      await waitFor(
        async () => {
          for (const id of healthy) {
            if ((await inspect(id)).State.Health?.Status !== "healthy") return false;
          }
          return true;
        },
        "three healthy workers",
        90_000,
        500,
      );

      const results = `results/${project}.json`;
      await t.step("deno task dispatch, as the stack's dispatcher, gets both results", async () => {
        const run = await dispatch([
          "--broker",
          `amqp://dispatcher@127.0.0.1:${amqpPort}`,
          "--out",
          results,
        ]);
        assert.equal(run.code, 0, run.stdout + run.stderr);
        const out = run.stdout;
        assert.match(out, /^Loaded config: Distributed task system demo \(test-config\.yml\)$/m);
        assert.ok(
          out.includes(
            `Broker: amqp://dispatcher:***@127.0.0.1:${amqpPort} (password from ${secretsDir}/dispatcher.password)`,
          ),
          out,
        );
        // Worker ids carry the container's host name: its short container id.
        assert.match(
          out,
          /^Result from task_a: Hello from Task A \(\d\.\d{3} s, attempts: 1, worker: task_a@[0-9a-f]{12}-\d+\)$/m,
        );
        assert.match(
          out,
          /^Result from task_b: Hello from Task B \(\d\.\d{3} s, attempts: 1, worker: task_b@[0-9a-f]{12}-\d+\)$/m,
        );
        assert.match(out, /^Passed: 2\/2$/m);
        assert.match(out, /^Active workers: 3$/m, "the scenario's workers answered the ping");
      });

      await t.step("healthy workers agree with dispatch, status and /metrics", async () => {
        const workers = [...await containersOf("worker-a"), await containerOf("worker-b")];
        const document: RunDocument = JSON.parse(await Deno.readTextFile(results));
        keep({ stdout: JSON.stringify(document), stderr: "" });
        assert.deepEqual(document.workers.map((w) => w.queue), ["queue_a", "queue_a", "queue_b"]);

        // deno task status lists the running workers, as the stack's dispatcher.
        const status = keep(
          await runDeno(["task", "-q", "status", "--json"], {
            AMQP_URL: `amqp://dispatcher@127.0.0.1:${amqpPort}`,
            SECRETS_DIR: secretsDir,
          }),
        );
        assert.equal(status.code, 0, status.stdout + status.stderr);
        const system: SystemStatus = JSON.parse(status.stdout);
        const ours = system.workers.filter((w) => w.queue === "queue_a" || w.queue === "queue_b");
        assert.deepEqual(
          ours.map((w) => [w.function, w.queue]),
          [["task_a", "queue_a"], ["task_a", "queue_a"], ["task_b", "queue_b"]],
        );
        for (const w of ours) assert.match(w.worker, /^task_[ab]@[0-9a-f]{12}-\d+$/);
        assert.deepEqual(system.queues.map((q) => [q.queue, q.consumers, q.workers]), [
          ["queue_a", 2, 2],
          ["queue_b", 1, 1],
        ]);
        assert.equal(ours.reduce((sum, w) => sum + w.tasks_done, 0), 2);

        // /metrics of every replica, on the container network: the counts add
        // up to what was sent. And each worker's logs are JSON with the task ids.
        const done = new Map<string, number>();
        for (const id of workers) {
          const container = await inspect(id);
          const network = Object.values(container.NetworkSettings.Networks)[0] as {
            IPAddress: string;
          };
          const response = await fetch(`http://${network.IPAddress}:9464/metrics`);
          const metrics = parsePrometheus(await response.text());
          const fn = container.Config.Labels["org.opencontainers.image.title"].replace(
            "worker-",
            "",
          );
          done.set(
            fn,
            (done.get(fn) ?? 0) + metrics.value("worker_tasks_total", { status: "success" }),
          );
          const health = await fetch(`http://${network.IPAddress}:9464/healthz`);
          assert.equal(health.status, 200);
          await health.body?.cancel();
        }
        assert.deepEqual(Object.fromEntries(done), { task_a: 1, task_b: 1 });
        for (const task of document.tasks) {
          const container = workers.find((id) => task.worker!.includes(`@${id.slice(0, 12)}-`));
          assert.ok(container, `the container of ${task.worker}`);
          const logs = keep(await docker(["logs", container])).stdout.split("\n").filter(Boolean);
          const entries = logs.map((line) => JSON.parse(line));
          const succeeded = entries.find((e) => e.msg === "Task succeeded");
          assert.equal(succeeded?.task_id, task.task_id);
          assert.equal(succeeded?.worker, task.worker);
        }
      });

      await t.step("the broker refuses each user what is not its own", async () => {
        // RabbitMQ 3.x says "access to queue", 4.x "read access to queue" (or write, configure).
        const refusal = (user: string, queue: string) =>
          new RegExp(
            `as the broker refused access: .*ACCESS_REFUSED - (?:(?:read|write|configure) )?access to queue '${
              queue.replaceAll(".", "\\.")
            }' in vhost '/' refused for user '${user}'`,
          );
        // As the worker declares it (runtime/worker/settle.ts, retryQueueOptions).
        const retryQueue = {
          type: "quorum" as const,
          messageTtlMs: 100,
          deadLetterQueue: "queue_a",
        };
        const taskA = plain("task_a", passwords.task_a);
        const dispatcher = plain("dispatcher", passwords.dispatcher);
        const operator = plain("operator", passwords.operator);
        type Case = [string, string, string, (b: Broker) => Promise<unknown>, RegExp | "ok"];
        const cases: Case[] = [
          ["guest", "log in", plain("guest", "guest"), () => Promise.resolve(), /refused the user/],
          ["task_a", "check queue_a", taskA, (b) => b.inspectQueue("queue_a"), "ok"],
          [
            "task_a",
            "declare a retry queue",
            taskA,
            (b) => b.declareQueue("queue_a.retry.100", retryQueue),
            "ok",
          ],
          [
            "task_a",
            "declare a queue it never uses",
            taskA,
            (b) => b.declareQueue("queue_a.extra"),
            refusal("task_a", "queue_a.extra"),
          ],
          [
            "task_a",
            "consume queue_b",
            taskA,
            (b) => b.consume("queue_b", () => {}, { prefetch: 1 }),
            refusal("task_a", "queue_b"),
          ],
          [
            "task_a",
            "get queue_b.dlq",
            taskA,
            (b) => b.get("queue_b.dlq"),
            refusal("task_a", "queue_b.dlq"),
          ],
          [
            "task_a",
            "declare queue_b",
            taskA,
            (b) => b.declareQueue("queue_b"),
            refusal("task_a", "queue_b"),
          ],
          [
            "task_a",
            "delete queue_b",
            taskA,
            (b) => b.deleteQueue("queue_b"),
            refusal("task_a", "queue_b"),
          ],
          ["dispatcher", "check queue_a", dispatcher, (b) => b.inspectQueue("queue_a"), "ok"],
          [
            "dispatcher",
            "check queue_a.dlq",
            dispatcher,
            (b) => b.inspectQueue("queue_a.dlq"),
            "ok",
          ],
          [
            // Its write on queue_a (for the passive check of RabbitMQ 4.3) binds
            // nothing: it may read no exchange that carries messages.
            "dispatcher",
            "bind queue_a to tasks.events",
            dispatcher,
            (b) => b.bindQueue("queue_a", "tasks.events"),
            /as the broker refused access: .*ACCESS_REFUSED - (?:read )?access to exchange 'tasks\.events' in vhost '\/' refused for user 'dispatcher'/,
          ],
          [
            "dispatcher",
            "open Direct Reply-to",
            dispatcher,
            (b) => b.openReplyQueue(() => {}),
            "ok",
          ],
          [
            "dispatcher",
            "consume queue_a",
            dispatcher,
            (b) => b.consume("queue_a", () => {}, { prefetch: 1 }),
            refusal("dispatcher", "queue_a"),
          ],
          [
            "dispatcher",
            "get queue_a.dlq",
            dispatcher,
            (b) => b.get("queue_a.dlq"),
            refusal("dispatcher", "queue_a.dlq"),
          ],
          [
            "dispatcher",
            "declare queue_new",
            dispatcher,
            (b) => b.declareQueue("queue_new"),
            refusal("dispatcher", "queue_new"),
          ],
          [
            "dispatcher",
            "delete queue_a",
            dispatcher,
            (b) => b.deleteQueue("queue_a"),
            refusal("dispatcher", "queue_a"),
          ],
          ["operator", "read queue_b.dlq", operator, (b) => b.get("queue_b.dlq"), "ok"],
          [
            "operator",
            "consume queue_a",
            operator,
            (b) => b.consume("queue_a", () => {}, { prefetch: 1 }),
            refusal("operator", "queue_a"),
          ],
          [
            "operator",
            "purge or delete queue_a.dlq",
            operator,
            (b) => b.deleteQueue("queue_a.dlq"),
            refusal("operator", "queue_a.dlq"),
          ],
        ];
        for (const [user, label, url, operation, expected] of cases) {
          const outcome = await attempt(url, operation);
          console.log(`  ${user}: ${label}: ${outcome}`);
          if (expected === "ok") assert.equal(outcome, "ok", `${user} does its own job: ${label}`);
          else assert.match(outcome, expected, `${user} may not ${label}`);
        }
        // Only the administrator may use the management API.
        const managers = [["admin", 200], ["operator", 401], ["dispatcher", 401], ["task_a", 401]];
        for (const [user, status] of managers as [string, number][]) {
          const response = await fetch(`http://127.0.0.1:${managementPort}/api/whoami`, {
            headers: { authorization: `Basic ${btoa(`${user}:${passwords[user]}`)}` },
          });
          await response.body?.cancel();
          assert.equal(response.status, status, `management API for ${user}`);
        }
      });

      await t.step(
        "amqps:// works with the right CA and a client certificate, and explains refusals",
        async () => {
          const tls = ["--broker", `amqps://dispatcher@localhost:${amqpsPort}`];
          const client = ["--cert-file", pki.clientCert, "--key-file", pki.clientKey];
          const good = await dispatch([...tls, "--ca-file", pki.ca, ...client]);
          assert.equal(good.code, 0, good.stdout + good.stderr);
          assert.match(
            good.stdout,
            new RegExp(`^Broker: amqps://dispatcher:\\*\\*\\*@localhost:${amqpsPort} `, "m"),
          );
          assert.match(good.stdout, /^Passed: 2\/2$/m);

          const wrongCa = await dispatch([...tls, "--ca-file", pki.wrongCa, ...client]);
          assert.equal(wrongCa.code, 3, wrongCa.stdout + wrongCa.stderr);
          console.log(`  wrong CA: ${wrongCa.stderr.trim()}`);
          assert.ok(
            wrongCa.stderr.includes(
              `Cannot connect to the broker at amqps://dispatcher:***@localhost:${amqpsPort} as its TLS certificate is not signed by the CA in --ca-file '${pki.wrongCa}'`,
            ),
            wrongCa.stderr,
          );
          assert.match(
            wrongCa.stderr,
            /: set --ca-file or AMQP_CA_FILE to the CA certificate that signed the broker's certificate$/m,
          );

          const noCert = await dispatch([...tls, "--ca-file", pki.ca]);
          assert.equal(noCert.code, 3, noCert.stdout + noCert.stderr);
          console.log(`  no client certificate: ${noCert.stderr.trim()}`);
          assert.match(
            noCert.stderr,
            /as it requires a client certificate .*: set --cert-file or AMQP_CERT_FILE and --key-file or AMQP_KEY_FILE$/m,
          );

          // The fixture's worker reads its CA, certificate and key in the real
          // image, and its connection is encrypted.
          const connections = (await compose([
            "exec",
            "-T",
            "rabbitmq",
            "rabbitmqctl",
            "-q",
            "list_connections",
            "user",
            "ssl",
          ])).stdout;
          assert.match(connections, /^escape\s+true$/m, connections);
          assert.match(connections, /^task_a\s+false$/m, connections);
        },
      );

      await t.step(
        "a function in the real container reaches no secret, variable, file, program, host or broker connection, from its top-level code or its handler",
        async () => {
          const broker = await connectAmqp(plain("dispatcher", passwords.dispatcher), {
            connectionName: "e2e-sandbox",
          });
          try {
            await waitFor(
              async () => ((await broker.inspectQueue("queue_escape"))?.consumers ?? 0) > 0,
              "the sandbox worker consumes",
              30_000,
              250,
            );
            const client = await TaskClient.open(broker, {
              functions: new Map([["escape", { queue: "queue_escape", user: "escape" }]]),
            });
            const call = async (payload: Record<string, string>): Promise<TaskReply> => {
              const outcome = await client.request("escape", payload, {
                timeoutMs: 15_000,
              });
              assert.equal(outcome.kind, "reply", `a reply to ${JSON.stringify(payload)}`);
              return (outcome as { reply: TaskReply }).reply;
            };
            // What the module's top-level code got, as it loaded, before any task.
            const top = await call({ attempt: "top-level" });
            console.log(`  top-level: ${JSON.stringify(top.result)}`);
            const reached = top.result as Record<string, string>;
            assert.ok(Object.keys(reached).length >= 10);
            for (const [what, outcome] of Object.entries(reached)) {
              assert.equal(outcome, "NotCapable", `top-level ${what}`);
            }
            // Imports written out in its code are checked against what the
            // worker process may read: its code, its secret files revoked.
            const imports = await call({ attempt: "top-level-imports" });
            for (const [what, outcome] of Object.entries(imports.result as object)) {
              assert.match(String(outcome), /^TypeError: Requires read access to /, what);
            }
            for (
              const target of [
                "text /etc/passwd",
                "text /run/secrets/amqp_password",
                "json ../deno.json",
                "code ../tests/_helpers.ts",
              ]
            ) {
              // Retries allowed (the fixture has none of its own): a denial must not use them.
              const outcome = await client.request("escape", {
                attempt: "import",
                target,
              }, { timeoutMs: 15_000, retry: { max_retries: 2, base_delay_ms: 1 } });
              assert.equal(outcome.kind, "reply", `a reply to import ${target}`);
              const reply = (outcome as { reply: TaskReply }).reply;
              console.log(`  import ${target}: ${reply.status} ${reply.error?.message}`);
              assert.equal(reply.status, "error", `${target}: ${JSON.stringify(reply.result)}`);
              assert.match(reply.error!.message, /^Requires read access to /, target);
              assert.equal(reply.attempts, 1, "a denial is not retried");
            }
            const denied: [string, string][] = [
              ["read", "/etc/passwd"],
              ["read", WORKER_IMAGE_FILES.AMQP_PASSWORD_FILE],
              ["read", WORKER_IMAGE_FILES.AMQP_KEY_FILE],
              ["read", "/app/functions/function.ts"],
              ["write", "/tmp/escaped"],
              ["run", "/bin/deno"],
              ["env", "HOME"],
              ["env", "AMQP_PASSWORD_FILE"],
              ["connect", "example.com:443"],
              ["connect", "rabbitmq:15672"],
              ["connect", "rabbitmq:5671"],
              ["amqp", `amqps://escape:${encodeURIComponent(passwords.escape)}@rabbitmq:5671`],
              ["exit", ""],
              ["close", ""],
            ];
            for (const [attempt, target] of denied) {
              const reply = await call({ attempt, target });
              console.log(
                `  ${attempt} ${
                  target.replace(/:[^:@]+@/, ":***@")
                }: ${reply.status} ${reply.error?.type}: ${reply.error?.message}`,
              );
              assert.equal(reply.status, "error", `${attempt} ${target} is denied`);
              // amqplib looks the host up through Node's DNS, which reports the denial as EPERM.
              if (attempt === "amqp") assert.match(reply.error!.message, /EPERM|NotCapable/);
              else assert.equal(reply.error?.type, "NotCapable", `${attempt}`);
              assert.equal(reply.attempts, 1, "a denial is not retried");
            }
            // A handler that never yields is stopped at its timeoutMs; the sandbox starts again.
            const spin = await call({ attempt: "spin", target: "600000" });
            assert.equal(spin.error?.type, "TaskTimeout");
            assert.equal((await call({})).result, "served");
            client.close();
          } finally {
            await broker.close();
          }
          const state = await inspect(await containerOf("worker-escape"));
          assert.equal(state.State.Running, true);
          assert.equal(state.RestartCount, 0, "the worker never restarted");
        },
      );

      await t.step(
        "deno task cancel stops a call running in the stack's worker container",
        async () => {
          const broker = await connectAmqp(plain("dispatcher", passwords.dispatcher), {
            connectionName: "e2e-cancel",
          });
          const client = await TaskClient.open(broker, {
            functions: new Map([["escape", { queue: "queue_escape", user: "escape" }]]),
          });
          try {
            const taskId = `spin-${crypto.randomUUID()}`;
            let started!: () => void;
            const running = new Promise<void>((resolve) => started = resolve);
            // A busy loop that never yields, for ten minutes.
            const call = client.request("escape", { attempt: "spin", target: "600000" }, {
              taskId,
              timeoutMs: 120_000,
              onProgress: (progress) => progress.event === "started" && started(),
            });
            await running;
            const cancelledAt = Date.now();
            // The tool believes answers from the workers' users its configuration names.
            const config = `${dir}/escape-config.yml`;
            await Deno.writeTextFile(
              config,
              "functions:\n  escape: { queue: queue_escape, user: escape }\n" +
                "scenarios:\n  s: { tasks: [{ task: escape }] }\n",
            );
            const cancel = keep(
              await runDeno(
                [
                  "task",
                  "-q",
                  "cancel",
                  "--config",
                  config,
                  "--broker",
                  `amqp://dispatcher@127.0.0.1:${amqpPort}`,
                  taskId,
                ],
                { SECRETS_DIR: secretsDir },
              ),
            );
            assert.equal(cancel.code, 0, cancel.stdout + cancel.stderr);
            assert.match(
              cancel.stdout,
              new RegExp(
                `Cancelled call ${taskId}: its running attempt on escape@[0-9a-f]{12}-\\d+ was stopped`,
              ),
            );
            const outcome = await call;
            assert.equal(outcome.kind === "reply" && outcome.reply.error?.type, "Cancelled");
            assert.ok(Date.now() - cancelledAt < 60_000, "ended long before the loop would have");
            // Its dead letter, as deno task dlq lists it (earlier steps left letters before it).
            const dlq = keep(
              await runDeno(
                [
                  "task",
                  "-q",
                  "dlq",
                  "--broker",
                  `amqp://operator@127.0.0.1:${amqpPort}`,
                  "--queue",
                  "queue_escape",
                  "--reason",
                  "cancelled",
                  "--json",
                ],
                { SECRETS_DIR: secretsDir },
              ),
            );
            assert.equal(dlq.code, 0, dlq.stdout + dlq.stderr);
            const letters = JSON.parse(dlq.stdout).queues[0].letters;
            const letter = letters.find((l: { taskId: string }) => l.taskId === taskId);
            assert.equal(letter?.reason, "cancelled", dlq.stdout);
            assert.equal(letter.errorType, "Cancelled");
            assert.equal(letter.sender, "dispatcher");
            // The loop never yields: the sandbox is ended, the worker process goes on.
            await waitFor(
              async () =>
                (await compose(["logs", "--no-color", "worker-escape"])).text.includes(
                  "did not answer",
                ),
              "the stuck sandbox ended",
              30_000,
              500,
            );
            const again = await client.request("escape", {}, { timeoutMs: 30_000 });
            assert.equal(again.kind === "reply" && again.reply.result, "served");
            assert.equal((await inspect(await containerOf("worker-escape"))).RestartCount, 0);
          } finally {
            await client.close();
          }
        },
      );

      await t.step(
        "a function's user cannot call another function: task_b runs nothing from task_a and dead-letters it",
        async () => {
          const asTaskA = await connectAmqp(plain("task_a", passwords.task_a));
          const asOperator = await connectAmqp(plain("operator", passwords.operator));
          const taskId = `forged-${crypto.randomUUID()}`;
          try {
            // Well formed, and the default exchange lets task_a publish it.
            const { encodeRequest } = await import("../core/contract/mod.ts");
            await asTaskA.publish("queue_b", encodeRequest("task_b", {}, { taskId }));
            const letter = await waitForLetter(asOperator, "queue_b.dlq", taskId);
            assert.equal(letter.properties.headers?.["x-dlq-reason"], "unauthenticated");
            assert.equal(letter.properties.headers?.["x-dlq-sender"], "task_a");
            assert.equal(letter.properties.userId, "task_b", "dead-lettered by task_b's worker");
            const logs = (await compose(["logs", "--no-color", "worker-b"])).text;
            const lines = logs.split("\n").filter((line) => line.includes(taskId));
            assert.ok(lines.some((line) => line.includes('"status":"unauthenticated"')), logs);
            assert.ok(
              !lines.some((line) => line.includes('"msg":"Task succeeded"')),
              "it never ran",
            );
          } finally {
            await asTaskA.close();
            await asOperator.close();
          }
        },
      );

      await t.step(
        "a forged pong from task_a's user lists no worker in deno task status or dispatch",
        async () => {
          const asTaskA = await connectAmqp(plain("task_a", passwords.task_a));
          // task_a may have a control queue of its own: it hears every ping.
          const queue = "queue_a.control.0badc0de";
          let forged = 0;
          try {
            await asTaskA.declareQueue(queue, {
              durable: false,
              exclusive: true,
              autoDelete: true,
            });
            await asTaskA.bindQueue(queue, "tasks.control", "");
            await asTaskA.consume(queue, (delivery) => {
              asTaskA.ack(delivery);
              const { replyTo, correlationId } = delivery.properties;
              if (!replyTo) return;
              forged++;
              const pong = {
                kind: "pong",
                worker: "task_b@forged",
                function: "task_b",
                queue: "queue_b",
                started_at: new Date().toISOString(),
                uptime_ms: 1,
                concurrency: 1,
                tasks_done: 0,
                succeeded: 0,
                failed: 0,
                rejected: 0,
                retried: 0,
                in_flight: 0,
              };
              asTaskA.publish(replyTo, {
                body: new TextEncoder().encode(JSON.stringify(pong)),
                properties: {
                  contentType: "application/json",
                  correlationId,
                  type: "control.worker_info",
                },
              }).catch(() => {});
            }, { prefetch: 10 });
            const status = keep(
              await runDeno(["task", "-q", "status", "--json"], {
                AMQP_URL: `amqp://dispatcher@127.0.0.1:${amqpPort}`,
                SECRETS_DIR: secretsDir,
              }),
            );
            assert.ok(forged > 0, "the forger answered the ping");
            const system: SystemStatus = JSON.parse(status.stdout);
            assert.ok(!system.workers.some((w) => w.worker === "task_b@forged"), status.stdout);
            const run = await dispatch(["--broker", `amqp://dispatcher@127.0.0.1:${amqpPort}`]);
            assert.equal(run.code, 0, run.stdout + run.stderr);
            assert.ok(!run.stdout.includes("task_b@forged"), run.stdout);
          } finally {
            await asTaskA.close();
          }
        },
      );

      await t.step(
        "deno task dlq --replay sends a letter back to its own queue only, whatever its headers say",
        async () => {
          // The operator is the replaying tool's own user, so its letters pass
          // the trust check: only where it sends them is under test.
          const asOperator = await connectAmqp(plain("operator", passwords.operator));
          const asAdmin = await connectAmqp(plain("admin", passwords.admin));
          const asTaskB = await connectAmqp(plain("task_b", passwords.task_b));
          const misdirected = `misdirected-${crypto.randomUUID()}`;
          const planted = `planted-${crypto.randomUUID()}`;
          const forged = `forged-${crypto.randomUUID()}`;
          const { encodeRequest } = await import("../core/contract/mod.ts");
          const letter = (taskId: string, queue: string) => {
            const message = encodeRequest("task_a", { work_ms: 0 }, { taskId });
            message.properties.headers = {
              "x-dlq-reason": "exhausted",
              "x-dlq-queue": queue,
              "x-dlq-sender": "dispatcher",
              // As queue_a's workers record what they accept.
              "x-dlq-allowed-senders": "admin,dispatcher,operator,task_a",
            };
            return message;
          };
          try {
            // A letter in queue_a.dlq whose headers name queue_b.
            await asOperator.publish("queue_a.dlq", letter(misdirected, "queue_b"));
            // Letters planted by another function's user and by admin (the
            // default exchange lets any user publish to any queue): their
            // user_id is not queue_a's workers', so they prove nothing.
            await asTaskB.publish("queue_a.dlq", letter(planted, "queue_a"));
            await asAdmin.publish("queue_a.dlq", letter(forged, "queue_b"));
            const replay = keep(
              await runDeno(["task", "dlq", "--queue", "queue_a", "--replay"], {
                AMQP_URL: `amqp://operator@127.0.0.1:${amqpPort}`,
                SECRETS_DIR: secretsDir,
              }),
            );
            console.log(`  ${replay.stdout.trim().replaceAll("\n", "\n  ")}`);
            // 1: it replayed what it could and refused the rest, naming each.
            assert.equal(replay.code, 1, replay.stdout + replay.stderr);
            const output = replay.stdout + replay.stderr;
            assert.match(output, new RegExp(`${planted}.*user_id is 'task_b'`));
            assert.match(output, new RegExp(`${forged}.*user_id is 'admin'`));
            const logsOf = async (service: string) =>
              (await compose(["logs", "--no-color", service])).text;
            await waitFor(
              async () => (await logsOf("worker-a")).includes(misdirected),
              "task_a ran the replayed letter",
              20_000,
              250,
            );
            const logsA = await logsOf("worker-a");
            assert.ok(!(await logsOf("worker-b")).includes(misdirected), "never sent to queue_b");
            assert.ok(!logsA.includes(planted), "a letter planted by task_b is not replayed");
            assert.ok(!logsA.includes(forged), "a letter planted by admin is not replayed");
            // The refused letters stay where an operator can look at them.
            const left = await runDeno(["task", "dlq", "--queue", "queue_a"], {
              AMQP_URL: `amqp://operator@127.0.0.1:${amqpPort}`,
              SECRETS_DIR: secretsDir,
            });
            assert.match(left.stdout, new RegExp(planted));
            assert.match(left.stdout, new RegExp(forged));
          } finally {
            await asOperator.close();
            await asAdmin.close();
            await asTaskB.close();
          }
        },
      );

      await t.step(
        "a request built to exhaust memory is refused; the worker is not restarted and serves the next task",
        async () => {
          const client = await TaskClient.open(
            await connectAmqp(plain("dispatcher", passwords.dispatcher)),
            { functions: new Map([["task_a", { queue: "queue_a", user: "task_a" }]]) },
          );
          const before = await Promise.all(
            (await containersOf("worker-a")).map(async (id) => (await inspect(id)).RestartCount),
          );
          const broker = await connectAmqp(plain("dispatcher", passwords.dispatcher));
          try {
            // Nearly 1 MiB of nesting: within the broker's limit, refused unparsed.
            const nested = "[".repeat(500_000) + "]".repeat(500_000);
            const replies: TaskReply[] = [];
            const replyTo = await broker.openReplyQueue((message) => {
              replies.push(JSON.parse(new TextDecoder().decode(message.body)));
            });
            await broker.publish("queue_a", {
              body: new TextEncoder().encode(nested),
              properties: { contentType: "application/json", correlationId: "nested", replyTo },
            });
            await waitFor(() => replies.length === 1, "the refusal", 15_000, 100);
            assert.equal(replies[0].error?.type, "InvalidJson");
            // Over the broker's max_message_size: refused at the publisher, never delivered.
            const huge = new Uint8Array(2 * 1024 * 1024).fill(0x5b);
            await assert.rejects(
              () =>
                broker.publish("queue_a", {
                  body: huge,
                  properties: { contentType: "application/json" },
                }),
              /message size|not confirm|closed|PRECONDITION/i,
            );
          } finally {
            await broker.close().catch(() => {});
          }
          const outcome = await client.request("task_a", { work_ms: 0 }, {
            timeoutMs: 15_000,
          });
          assert.equal(outcome.kind, "reply");
          client.close();
          const after = await Promise.all(
            (await containersOf("worker-a")).map(async (id) => {
              const state = await inspect(id);
              assert.equal(state.State.OOMKilled, false);
              return state.RestartCount;
            }),
          );
          assert.deepEqual(after, before, "no replica restarted");
        },
      );

      await t.step("guest cannot authenticate at all, inside the broker either", async () => {
        const check = await compose(
          ["exec", "-T", "rabbitmq", "rabbitmqctl", "authenticate_user", "guest", "guest"],
          true,
        );
        assert.notEqual(check.code, 0, check.text);
        const users = (await compose(["exec", "-T", "rabbitmq", "rabbitmqctl", "-q", "list_users"]))
          .stdout;
        assert.match(users, /^guest\s+\[\]$/m, "guest has no tags, so no management access");
      });

      await t.step(
        "the broker's Erlang cookie is the generated secret, not one an image carries",
        async () => {
          const generated = (await Deno.readTextFile(`${secretsDir}/erlang.cookie`)).trim();
          const inBroker = await compose([
            "exec",
            "-T",
            "rabbitmq",
            "cat",
            "/var/lib/rabbitmq/.erlang.cookie",
          ]);
          assert.equal(inBroker.stdout.trim(), generated);
          // The image's own cookie, as any container started from it has it.
          const image = (await inspect(await containerOf("rabbitmq"))).Config.Image;
          const baked = await docker(
            ["run", "--rm", "--entrypoint", "cat", image, "/var/lib/rabbitmq/.erlang.cookie"],
            {},
            true,
          );
          assert.notEqual(baked.stdout.trim(), generated, "a cookie nobody else can know");
        },
      );

      await t.step(
        "containers run non-root, read-only, without capabilities, with limits and no shell",
        async () => {
          for (const service of WORKERS) {
            const container = await inspect(await containerOf(service));
            const host = container.HostConfig;
            assert.equal(container.Config.User, "65532:65532", `${service} runs as nonroot`);
            assert.equal(host.ReadonlyRootfs, true, `${service} has a read-only root`);
            assert.deepEqual(host.CapDrop, ["ALL"], `${service} drops capabilities`);
            assert.equal(host.CapAdd, null, `${service} adds none`);
            assert.ok(
              host.SecurityOpt.some((o: string) => o.startsWith("no-new-privileges")),
              service,
            );
            assert.equal(host.Memory, 256 * 1024 * 1024, `${service} memory limit`);
            assert.equal(host.PidsLimit, 128, `${service} process limit`);
            assert.deepEqual(host.PortBindings ?? {}, {}, `${service} publishes nothing`);
            const shell = await docker(
              ["run", "--rm", "--entrypoint", "/bin/sh", container.Config.Image, "-c", "true"],
              {},
              true,
            );
            assert.notEqual(shell.code, 0, `${service}'s image has no shell`);
          }
          const init = await inspect(await containerOf("secrets-init"));
          assert.equal(init.State.ExitCode, 0);
          assert.equal(init.HostConfig.NetworkMode, "none");
          assert.deepEqual(
            init.HostConfig.CapAdd.map((c: string) => c.replace(/^CAP_/, "")).sort(),
            ["CHOWN", "DAC_OVERRIDE", "FOWNER"],
          );
          const broker = await inspect(await containerOf("rabbitmq"));
          assert.equal(broker.Config.User, "rabbitmq", "the broker never runs as root");
          assert.equal(broker.HostConfig.ReadonlyRootfs, true);
          assert.deepEqual(broker.HostConfig.CapDrop, ["ALL"]);
          assert.equal(broker.HostConfig.CapAdd, null);
          assert.ok(broker.HostConfig.SecurityOpt.some((o: string) => o.startsWith("no-new")));
          assert.equal(broker.HostConfig.Memory, 512 * 1024 * 1024);
          assert.equal(broker.HostConfig.PidsLimit, 256, "the broker's process limit");
          for (const [port, bindings] of Object.entries(broker.HostConfig.PortBindings)) {
            for (const binding of bindings as { HostIp: string }[]) {
              assert.equal(binding.HostIp, "127.0.0.1", `${port} is published on 127.0.0.1 only`);
            }
          }
        },
      );

      await t.step(
        "rotating a worker's password needs no broker restart; the old one is refused",
        async () => {
          const old = passwords.task_b;
          await Deno.remove(`${secretsDir}/task_b.password`);
          await compose(["run", "--rm", "secrets-init"]);
          await compose([
            "exec",
            "-T",
            "rabbitmq",
            "rabbitmqctl",
            "import_definitions",
            "/run/secrets/definitions.json",
          ]);
          await compose(["up", "-d", "--no-deps", "--force-recreate", "worker-b"]);
          passwords.task_b_rotated = await readSecret(`${secretsDir}/task_b.password`);
          assert.notEqual(passwords.task_b_rotated, old);
          assert.match(
            await attempt(plain("task_b", old), () => Promise.resolve()),
            /refused the user name or password/,
          );
          assert.equal(
            await attempt(plain("task_b", passwords.task_b_rotated), () => Promise.resolve()),
            "ok",
          );
          const run = await dispatch([
            "--broker",
            `amqp://dispatcher@127.0.0.1:${amqpPort}`,
            "--wait-workers",
            "30",
          ]);
          assert.equal(run.code, 0, run.stdout + run.stderr);
          assert.match(run.stdout, /^Result from task_b: Hello from Task B/m);
        },
      );

      await t.step(
        "deno task emit runs task_a in its container; the dispatcher emits only what the registry grants",
        async () => {
          const emit = async (args: string[]) =>
            keep(
              await runDeno([
                "task",
                "emit",
                ...args,
                "--broker",
                `amqp://dispatcher@127.0.0.1:${amqpPort}`,
              ], { SECRETS_DIR: secretsDir }),
            );
          const emitted = await emit(["demo.greet", "--data", '{"work_ms": 1}', "--json"]);
          assert.equal(emitted.code, 0, emitted.stdout + emitted.stderr);
          const { id } = JSON.parse(emitted.stdout.trim().split("\n").at(-1)!);
          // The generated definitions bind nothing: the worker bound queue_a
          // with its FUNCTION_TRIGGERS, as its topic permission allows.
          await waitFor(
            async () =>
              (await compose(["logs", "--no-color", "worker-a"])).text.split("\n").some((line) =>
                line.includes(id) && line.includes('"msg":"Task succeeded"')
              ),
            "one of worker-a's containers runs the event",
            30_000,
            250,
          );
          const refused = await emit(["order.created"]);
          assert.equal(refused.code, 1, refused.stdout + refused.stderr);
          assert.match(
            refused.stderr,
            /Cannot emit 'order\.created' as broker user 'dispatcher' may not/,
          );
          const scenario = await dispatch([
            "--broker",
            `amqp://dispatcher@127.0.0.1:${amqpPort}`,
            "--scenario",
            "greet_by_event",
            "--no-save",
          ]);
          assert.equal(scenario.code, 0, scenario.stdout + scenario.stderr);
          assert.match(scenario.stdout, /RAN\s+task_a success on task_a@[0-9a-f]{12}-\d+/);
          assert.match(scenario.stdout, /^Events passed: 1\/1$/m);
        },
      );

      await t.step("a wrong password is refused and printed masked", async () => {
        const wrong = `Wrong-${crypto.randomUUID()}`;
        passwords.wrong = wrong;
        // In the environment, not in --broker: `deno task` echoes its arguments.
        const run = await dispatch([], { AMQP_URL: plain("dispatcher", wrong) });
        assert.equal(run.code, 3);
        assert.match(
          run.stderr,
          /amqp:\/\/dispatcher:\*\*\*@127\.0\.0\.1:\d+ as it refused the user name or password/,
        );
      });

      await t.step("a stopped worker drains and exits 0", async () => {
        const replicas = await containersOf("worker-a");
        await compose(["stop", "worker-a"]);
        for (const id of replicas) {
          assert.equal((await inspect(id)).State.ExitCode, 0, "worker-a exits 0 on SIGTERM");
        }
        await waitFor(
          async () => (await compose(["logs", "worker-a"])).text.includes('"msg":"Stopped"'),
          "stop log",
        );
      });

      await t.step("no output of the run contains a password", async () => {
        await compose(["logs", "--no-color"]);
        await compose(["exec", "-T", "rabbitmq", "sh", "-c", "cat /var/log/rabbitmq/*.log"], true);
        for (const service of [...WORKERS, "secrets-init", "rabbitmq"]) {
          for (const id of await containersOf(service)) {
            const container = await inspect(id);
            await inspect(container.Image);
          }
        }
        const results = new URL("results/", ROOT);
        try {
          for await (const entry of Deno.readDir(results)) {
            if (entry.isFile) outputs.push(await Deno.readTextFile(new URL(entry.name, results)));
          }
        } catch (error) {
          if (!(error instanceof Deno.errors.NotFound)) throw error;
        }
        const corpus = outputs.join("\n");
        console.log(`  searched ${outputs.length} outputs, ${corpus.length} characters`);
        assert.ok(corpus.includes('"msg":"Consuming"'), "the worker logs are part of it");
        for (const [user, password] of Object.entries(passwords)) {
          assert.ok(password.length >= 16, `${user}'s password is long enough to search for`);
          for (const form of new Set([password, encodeURIComponent(password)])) {
            assert.ok(!corpus.includes(form), `the password of ${user} appears in an output`);
          }
        }
      });
    } finally {
      await Deno.remove(new URL(`results/${project}.json`, ROOT)).catch(() => {});
      const down = await compose(["down", "-v", "--rmi", "local", "--remove-orphans"], true);
      if (down.code !== 0) console.error(down.text);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
