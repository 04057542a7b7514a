/**
 * The vhost's queue budget against its least trusted users, on a real
 * RabbitMQ: the definitions of `ops/rabbitmq/definitions.ts` imported into
 * a vhost of the host broker (3.10) with users of their own, read back
 * from the broker (limits, operator policies, user limits), then a hostile
 * `dashboard` and a hostile `celery_client` declaring queues until refused,
 * and what a worker start and a dispatcher's reply queue still get. The
 * same definitions are loaded at boot by the compose image's RabbitMQ
 * (4.0.5) and read back there.
 */

import assert from "node:assert/strict";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import type { Broker } from "../core/broker/mod.ts";
import { encodeTaskEvent, EVENTS_EXCHANGE, replyQueueName } from "../core/contract/mod.ts";
import {
  buildDefinitions,
  celeryClientPermissions,
  DASHBOARD_EVENT_QUEUES,
  DASHBOARD_PERMISSIONS,
  dispatcherPermissions,
  MAX_QUEUES,
  operatorPolicies,
  type Permissions,
  RETRY_QUEUES_PER_FUNCTION,
  type User,
  USER_LIMITS,
  workerPermissions,
} from "../ops/rabbitmq/definitions.ts";
import { hashPassword } from "../ops/rabbitmq/hash_password.ts";
import { uniqueName, waitFor } from "./_helpers.ts";
import { AMQP_URL, NEEDS_DOCKER, NEEDS_RABBITMQ } from "./_infra.ts";
import { MANAGEMENT_URL } from "./_management.ts";
import { docker } from "./_docker.ts";
import { holdEngine } from "./_engine_lock.ts";

/** A retry ladder of RETRY_QUEUES_PER_FUNCTION delays, as a worker's. */
const LADDER = Array.from({ length: RETRY_QUEUES_PER_FUNCTION }, (_, i) => 100 + 50 * i);
/** How long the test's policy lets a client's queue stay unused: short, to see them go. */
const TEST_EXPIRES_MS = 3000;
/** The flood's budget: the rule holds at any size, a small one keeps the flood short. */
const FLOOD_BUDGET = 150;

/** The management API, answering JSON, as the host's administrator (the user of AMQP_URL). */
async function management(method: string, path: string, body?: unknown): Promise<unknown> {
  const url = new URL(AMQP_URL);
  const auth = btoa(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`);
  const response = await fetch(`${MANAGEMENT_URL}/api/${path}`, {
    method,
    headers: { authorization: `Basic ${auth}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} /api/${path}: ${response.status} ${text}`);
  return text === "" ? undefined : JSON.parse(text);
}

interface Party {
  user: string;
  permissions: Permissions;
  limits?: User["limits"];
}

/** The test's users, named after the stack's with the vhost as prefix. */
function partiesOf(vhost: string): Record<string, Party> {
  return {
    dashboard: {
      user: `${vhost}_dashboard`,
      permissions: DASHBOARD_PERMISSIONS,
      limits: USER_LIMITS.dashboard,
    },
    celery_client: {
      user: `${vhost}_celery_client`,
      permissions: celeryClientPermissions(["queue_a"]),
      limits: USER_LIMITS.celery_client,
    },
    dispatcher: { user: `${vhost}_dispatcher`, permissions: dispatcherPermissions(["queue_a"]) },
    task_a: {
      user: `${vhost}_task_a`,
      permissions: workerPermissions("queue_a", { retryDelaysMs: LADDER }),
    },
  };
}

async function usersOf(parties: Record<string, Party>, password: string): Promise<User[]> {
  const users: User[] = [];
  for (const party of Object.values(parties)) {
    users.push({
      name: party.user,
      passwordHash: await hashPassword(password),
      tags: [],
      permissions: party.permissions,
      limits: party.limits,
    });
  }
  return users;
}

/** The queues of a worker's start: its own, its dead letters, its ladder; declared again, they cost nothing. */
async function declareWorkerQueues(broker: Broker): Promise<void> {
  await broker.declareQueue("queue_a", { durable: true });
  await broker.declareQueue("queue_a.dlq", { durable: true });
  for (const ms of LADDER) {
    await broker.declareQueue(`queue_a.retry.${ms}`, {
      durable: true,
      messageTtlMs: ms,
      deadLetterQueue: "queue_a",
    });
  }
}

async function queueCount(vhost: string): Promise<number> {
  const queues = await management("GET", `queues/${encodeURIComponent(vhost)}?columns=name`);
  return (queues as unknown[]).length;
}

Deno.test({
  name:
    "the vhost's queue budget on RabbitMQ 3.10: limits read back, a hostile dashboard bounded by name, a hostile celery_client bounded in time",
  ignore: NEEDS_RABBITMQ,
  sanitizeResources: false,
  async fn(t) {
    const vhost = uniqueName("budget");
    const path = encodeURIComponent(vhost);
    const password = crypto.randomUUID();
    const parties = partiesOf(vhost);
    const { hostname, port } = new URL(AMQP_URL);
    const urlOf = (party: Party) =>
      `amqp://${encodeURIComponent(party.user)}:${password}@${hostname}:${port || 5672}/${path}`;
    const open: Broker[] = [];
    const connect = async (party: Party) => {
      const broker = await connectAmqp(urlOf(party));
      open.push(broker);
      return broker;
    };
    const definitions = buildDefinitions(await usersOf(parties, password), {
      vhost,
      clientQueueExpiresMs: TEST_EXPIRES_MS,
    });
    try {
      await management("POST", "definitions", definitions);

      await t.step("the broker holds the limits the definitions set (row 51)", async () => {
        const limits = await management("GET", `vhost-limits/${path}`) as {
          value: Record<string, number>;
        }[];
        assert.deepEqual(limits.map((l) => l.value), [{ "max-queues": MAX_QUEUES }]);
        const policies = await management("GET", `operator-policies/${path}`) as {
          name: string;
          pattern: string;
          definition: Record<string, number>;
        }[];
        const expected = operatorPolicies(TEST_EXPIRES_MS);
        assert.deepEqual(
          policies.map(({ name, pattern, definition }) => ({ name, pattern, definition }))
            .sort((a, b) => a.name.localeCompare(b.name)),
          expected.map(({ name, pattern, definition }) => ({ name, pattern, definition }))
            .sort((a, b) => a.name.localeCompare(b.name)),
        );
        for (const name of ["dashboard", "celery_client"] as const) {
          const found = await management(
            "GET",
            `user-limits/${encodeURIComponent(parties[name].user)}`,
          ) as { value: Record<string, number> }[];
          assert.deepEqual(found.map((l) => l.value), [USER_LIMITS[name]], name);
        }
      });

      // The rule does not depend on the budget's size: a small one keeps the flood short.
      await management("PUT", `vhost-limits/${path}/max-queues`, { value: FLOOD_BUDGET });

      let hostile: Broker | undefined;
      await t.step("a hostile dashboard takes its eight queues and no more", async () => {
        const dashboard = hostile = await connect(parties.dashboard);
        // Durable, not exclusive, and consumed so that no policy ends them:
        // the longest a dashboard could hold them.
        for (const name of DASHBOARD_EVENT_QUEUES) {
          await dashboard.declareQueue(name);
          await dashboard.consume(name, () => {}, { prefetch: 1 });
        }
        const refused: string[] = [];
        for (const name of ["dashboard.events.8", "dashboard.events.0a1b2c3d", "x"]) {
          const attempt = await connect(parties.dashboard);
          await assert.rejects(() => attempt.declareQueue(name), /ACCESS_REFUSED/, name);
          refused.push(name);
          await attempt.close();
        }
        assert.equal(refused.length, 3);
        // Its eight, and the streams the definitions made (cancellations, the gateway's record).
        assert.equal(
          await queueCount(vhost),
          DASHBOARD_EVENT_QUEUES.length + definitions.queues.length,
        );
        // Its connections are bounded too (user limits): a ninth is refused.
        const connections: Broker[] = [dashboard];
        for (let i = 1; i < USER_LIMITS.dashboard["max-connections"]; i++) {
          connections.push(await connect(parties.dashboard));
        }
        // RabbitMQ closes it at once (amqplib: "got <ConnectionClose>"), and
        // takes one again once another closed.
        await assert.rejects(() => connect(parties.dashboard), /ConnectionClose|limit/i);
        await connections.pop()!.close();
        connections.push(await connect(parties.dashboard));
      });

      await t.step("a worker still starts and a dispatcher still gets a reply queue", async () => {
        const worker = await connect(parties.task_a);
        await declareWorkerQueues(worker);
        await worker.declareQueue("queue_a.control.0a1b2c3d", {
          durable: false,
          exclusive: true,
          autoDelete: true,
        });
        const dispatcher = await connect(parties.dispatcher);
        const replies = replyQueueName();
        await dispatcher.declareQueue(replies, { durable: true, expiresMs: 60_000 });
        await dispatcher.consume(replies, (delivery) => dispatcher.ack(delivery), { prefetch: 10 });
        assert.equal(
          await queueCount(vhost),
          definitions.queues.length + DASHBOARD_EVENT_QUEUES.length + 2 +
            RETRY_QUEUES_PER_FUNCTION + 2,
        );
      });

      await t.step(
        "a flood of task events fills a dashboard's queue only to its policy's length",
        async () => {
          // Its consumer takes one message and never acknowledges it: the
          // worst case, a queue that nobody reads.
          await hostile!.bindQueue(DASHBOARD_EVENT_QUEUES[0], EVENTS_EXCHANGE);
          const dispatcher = await connect(parties.dispatcher);
          const maxLength = operatorPolicies().find((p) => p.name === "dashboard-events")!
            .definition["max-length"]!;
          const event = encodeTaskEvent({
            kind: "task-sent",
            function: "task_a",
            queue: "queue_a",
            task_id: "flood",
            at: new Date().toISOString(),
          });
          const sends = [];
          for (let i = 0; i < maxLength + 500; i++) {
            sends.push(dispatcher.publishToExchange(EVENTS_EXCHANGE, event));
          }
          await Promise.all(sends);
          const depth = (await dispatcher.inspectQueue(DASHBOARD_EVENT_QUEUES[0]))?.messages;
          assert.equal(depth, maxLength);
        },
      );

      await t.step(
        "a hostile celery_client fills the budget, and it comes back once it stops",
        async () => {
          const before = await queueCount(vhost);
          const celery = await connect(parties.celery_client);
          let made = 0;
          const error = await (async () => {
            for (;;) {
              try {
                const name = crypto.randomUUID();
                await celery.declareQueue(name, { durable: true });
                // Consumed, so that no policy ends them while it holds them.
                await celery.consume(name, () => {}, { prefetch: 1 });
                made++;
              } catch (error) {
                return error as Error;
              }
            }
          })();
          assert.match(error.message, /queue limit .* is reached/);
          assert.equal(made, FLOOD_BUDGET - before, "refused at the budget, not before");
          assert.equal(await queueCount(vhost), FLOOD_BUDGET);
          // What remains: queues that exist are declared again at no cost, so a
          // worker's restart and its retries are served...
          const worker = await connect(parties.task_a);
          await declareWorkerQueues(worker);
          // ...but no new queue: another replica's control queue, a caller's new reply queue.
          await assert.rejects(
            () =>
              worker.declareQueue("queue_a.control.0b1c2d3e", {
                durable: false,
                exclusive: true,
                autoDelete: true,
              }),
            /queue limit/,
          );
          const dispatcher = await connect(parties.dispatcher);
          await assert.rejects(() => dispatcher.declareQueue(replyQueueName()), /queue limit/);
          // Its queues, made and left, go once unused for the policy's time.
          await celery.close();
          await waitFor(
            async () => await queueCount(vhost) === before,
            `the celery_client's ${made} queues expire (policy: ${TEST_EXPIRES_MS} ms)`,
            60_000,
            250,
          );
          await dispatcher.declareQueue(replyQueueName(), { durable: true, expiresMs: 60_000 });
        },
      );
    } finally {
      for (const broker of open) await broker.close().catch(() => {});
      await management("DELETE", `vhosts/${path}`).catch(() => {});
      for (const party of Object.values(parties)) {
        await management("DELETE", `users/${encodeURIComponent(party.user)}`).catch(() => {});
      }
    }
  },
});

Deno.test({
  name:
    "the compose image's RabbitMQ loads the same definitions at boot: limits, policies, user limits",
  ignore: NEEDS_DOCKER,
  async fn() {
    await using _engine = await holdEngine("shared");
    const image = Deno.env.get("RABBITMQ_IMAGE") || "rabbitmq:4.0.5-management";
    const dir = await Deno.makeTempDir({ prefix: "budget-boot-" });
    const password = crypto.randomUUID();
    const parties = partiesOf("stack");
    // The stack's own names: one vhost, `/`.
    const definitions = buildDefinitions(await usersOf(parties, password));
    await Deno.writeTextFile(`${dir}/definitions.json`, JSON.stringify(definitions));
    await Deno.chmod(dir, 0o755);
    await Deno.chmod(`${dir}/definitions.json`, 0o644);
    const conf = new URL("../ops/rabbitmq/rabbitmq.conf", import.meta.url).pathname;
    const name = uniqueName("budget_boot");
    try {
      await docker([
        "run",
        "-d",
        "--name",
        name,
        "-p",
        "127.0.0.1::5672",
        "-v",
        `${conf}:/etc/rabbitmq/conf.d/20-task-system.conf:ro`,
        "-v",
        `${dir}/definitions.json:/run/secrets/definitions.json:ro`,
        image,
      ]);
      const rabbitmqctl = (...args: string[]) =>
        docker(["exec", name, "rabbitmqctl", "-q", ...args], {}, true);
      // As compose's health check: the AMQP listener opens after the definitions loaded.
      await waitFor(
        async () =>
          (await docker(
            ["exec", name, "rabbitmq-diagnostics", "-q", "check_port_connectivity"],
            {},
            true,
          )).code === 0,
        `${image} boots with the definitions`,
        120_000,
        1000,
      );
      // The import may end a moment after the listener opens: each is waited
      // for, and what the broker last said is in the failure's message.
      const shows = async (args: string[], expected: RegExp[], what: string) => {
        let last = "";
        try {
          await waitFor(
            async () => {
              last = (await rabbitmqctl(...args)).text;
              return expected.every((pattern) => pattern.test(last));
            },
            what,
            30_000,
            500,
          );
        } catch (error) {
          throw new Error(`${(error as Error).message}; the broker said:\n${last}`);
        }
      };
      await shows(
        ["list_vhost_limits", "-p", "/"],
        [new RegExp(`"max-queues":\\s*${MAX_QUEUES}\\b`)],
        "the vhost's queue limit",
      );
      await shows(
        ["list_operator_policies", "-p", "/"],
        operatorPolicies().map((policy) =>
          new RegExp(`^/\\t${policy.name}\\t.*"expires":${policy.definition.expires}\\b`, "m")
        ),
        "the operator policies",
      );
      for (const party of ["dashboard", "celery_client"] as const) {
        await shows(
          ["list_user_limits", "--user", parties[party].user],
          Object.entries(USER_LIMITS[party]).map(([key, value]) =>
            new RegExp(`"${key}":\\s*${value}\\b`)
          ),
          `${party}'s user limits`,
        );
      }
      // The dashboard's ninth name is refused there too.
      const hostPort = (await docker(["port", name, "5672/tcp"])).stdout.split(":").at(-1)!;
      const dashboardUrl = `amqp://${parties.dashboard.user}:${password}@127.0.0.1:${hostPort}`;
      let dashboard: Broker | undefined;
      await waitFor(
        async () => {
          dashboard = await connectAmqp(dashboardUrl).catch(() => undefined);
          return dashboard !== undefined;
        },
        "the dashboard user connects",
        60_000,
        500,
      );
      try {
        await dashboard!.declareQueue(DASHBOARD_EVENT_QUEUES[0], {
          durable: false,
          exclusive: true,
          autoDelete: true,
        });
        await assert.rejects(
          () => dashboard!.declareQueue("dashboard.events.8", { exclusive: true }),
          /ACCESS_REFUSED|refused/,
        );
      } finally {
        await dashboard!.close().catch(() => {});
      }
    } finally {
      await docker(["rm", "-f", "-v", name], {}, true);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
