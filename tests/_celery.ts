/**
 * What the Celery interop tests share: Debian's python3-celery and its gate
 * (with `CI=true` a missing Celery fails the test instead of ignoring it),
 * a vhost of their own on the host RabbitMQ with the broker users of
 * `ops/rabbitmq/definitions.ts` (so that parallel tests never share a queue, and
 * least privilege is what is tested), and the example Celery worker of
 * `examples/celery/`. Importing this probes the machine, as `_infra.ts`
 * does.
 *
 * @module
 */

import { run, spawn, type Spawned } from "../bench/peers/_process.ts";
import {
  buildDefinitions,
  celeryClientPermissions,
  celeryWorkerPermissions,
  dispatcherPermissions,
  type Permissions,
  workerPermissions,
} from "../ops/rabbitmq/definitions.ts";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { loadRegistry } from "../core/registry.ts";
import type { Broker } from "../core/broker/mod.ts";
import { uniqueName, waitFor } from "./_helpers.ts";
import { AMQP_URL, IN_CI, NEEDS_RABBITMQ } from "./_infra.ts";
import { manage, managementAnswers } from "./_management.ts";

export { spawn, type Spawned };

/** Debian ships Celery for its own Python only: a pyenv `python3` on PATH lacks it. */
export const PYTHON = "/usr/bin/python3";

/** The example Celery client and worker. */
export const CELERY_EXAMPLES = new URL("../examples/celery/", import.meta.url);

/** Celery programs made for the tests (`client_edges.py`). */
export const CELERY_FIXTURES = new URL("./fixtures/celery/", import.meta.url).pathname;

const CELERY = await run(PYTHON, ["-c", "import celery; print(celery.__version__)"], {
  timeoutMs: 20_000,
});

/** Celery's version, when Python imports it. */
export const CELERY_VERSION = CELERY.success ? CELERY.stdout : undefined;

/** Why Celery tests cannot run here, or `undefined`. */
export const CELERY_MISSING = CELERY.success
  ? undefined
  : `${PYTHON} cannot import celery (${
    CELERY.stderr.split("\n").at(-1)
  }): apt-get install -y python3-celery`;

const MANAGEMENT = NEEDS_RABBITMQ ? false : await managementAnswers();

/**
 * `ignore` for tests that need Celery and the host RabbitMQ with its
 * management API. Never true in CI: there the test runs, and fails on
 * {@linkcode assertCeleryHere}.
 */
export const NEEDS_CELERY = !IN_CI &&
  (NEEDS_RABBITMQ || !MANAGEMENT || CELERY_MISSING !== undefined);
if (NEEDS_CELERY && !NEEDS_RABBITMQ) {
  console.warn(
    `Ignoring the Celery tests: ${
      CELERY_MISSING ?? "no RabbitMQ management API (RABBITMQ_MANAGEMENT_URL)"
    }`,
  );
}

/** Fails, naming the fix, where Celery or the management API is missing (in CI). */
export function assertCeleryHere(): void {
  if (CELERY_MISSING) throw new Error(`Cannot run the Celery tests: ${CELERY_MISSING}`);
  if (!MANAGEMENT) {
    throw new Error(
      "Cannot run the Celery tests: no RabbitMQ management API answers (set RABBITMQ_MANAGEMENT_URL)",
    );
  }
}

/** The broker users of a Celery test vhost, each named uniquely. */
export interface CeleryUsers {
  dispatcher: string;
  task_a: string;
  task_b: string;
  /** The Celery worker of task_c (queue_c). */
  task_c: string;
  /** Celery clients calling task_a and task_b. */
  client: string;
}

/** A vhost of the host RabbitMQ with the stack's queues' names and users. */
export interface CeleryVhost {
  name: string;
  users: CeleryUsers;
  /** The AMQP URL of `user` in the vhost, password included. */
  url(user: string): string;
  /** A connection as guest (an administrator of the host broker), for checks. */
  admin(): Promise<Broker>;
  /** Deletes the vhost (its queues and exchanges) and its users. */
  close(): Promise<void>;
}

async function ok(response: Promise<Response>, what: string): Promise<void> {
  const { status, ok } = await response;
  if (!ok) throw new Error(`Cannot ${what}: the management API answered ${status}`);
}

/**
 * Makes a vhost with the stack's exchanges and, for each of
 * {@linkcode CeleryUsers}, a user with its permissions from
 * ops/rabbitmq/definitions.ts; queue names are the stack's own (queue_a,
 * queue_b, queue_c), so the example programs run unchanged.
 */
export async function createCeleryVhost(prefix: string): Promise<CeleryVhost> {
  const name = uniqueName(prefix);
  const password = crypto.randomUUID();
  const users: CeleryUsers = {
    dispatcher: `${name}_dispatcher`,
    task_a: `${name}_task_a`,
    task_b: `${name}_task_b`,
    task_c: `${name}_task_c`,
    client: `${name}_celery_client`,
  };
  // The stack's own functions: their triggers and emits are the registry's.
  const registry = await loadRegistry(
    new URL("../functions/registry.yaml", import.meta.url).pathname,
  );
  const grantsOf = (fn: string) => {
    const entry = registry.functions.get(fn);
    return { triggers: entry?.triggers, emits: entry?.emits };
  };
  const permissions: [string, Permissions][] = [
    [users.dispatcher, dispatcherPermissions(["queue_a", "queue_b", "queue_c"])],
    [users.task_a, workerPermissions("queue_a", grantsOf("task_a"))],
    [users.task_b, workerPermissions("queue_b", grantsOf("task_b"))],
    [users.task_c, celeryWorkerPermissions("queue_c")],
    [users.client, celeryClientPermissions(["queue_a", "queue_b"])],
  ];
  const vhost = encodeURIComponent(name);
  const { hostname, port, username } = new URL(AMQP_URL);
  const url = (user: string) => {
    const target = new URL(`amqp://${hostname}:${port || 5672}/${vhost}`);
    target.username = user;
    target.password = user === decodeURIComponent(username)
      ? decodeURIComponent(new URL(AMQP_URL).password)
      : password;
    return target.href;
  };
  const close = async () => {
    await manage("DELETE", `vhosts/${vhost}`);
    for (const [user] of permissions) await manage("DELETE", `users/${encodeURIComponent(user)}`);
  };
  try {
    await ok(manage("PUT", `vhosts/${vhost}`, {}), `create vhost ${name}`);
    await ok(
      manage("PUT", `permissions/${vhost}/${username}`, {
        configure: ".*",
        write: ".*",
        read: ".*",
      }),
      `let ${username} into ${name}`,
    );
    for (const exchange of buildDefinitions([]).exchanges) {
      await ok(
        manage("PUT", `exchanges/${vhost}/${encodeURIComponent(exchange.name)}`, {
          type: exchange.type,
          durable: exchange.durable,
        }),
        `declare ${exchange.name}`,
      );
    }
    for (const [user, granted] of permissions) {
      await ok(manage("PUT", `users/${user}`, { password, tags: "" }), `create user ${user}`);
      await ok(manage("PUT", `permissions/${vhost}/${user}`, granted), `permit ${user}`);
    }
  } catch (error) {
    await close();
    throw error;
  }
  return {
    name,
    users,
    url,
    admin: () => connectAmqp(url(decodeURIComponent(username)), { connectionName: "celery-test" }),
    close,
  };
}

/**
 * Starts the example Celery worker (`examples/celery/worker_tasks.py`) on
 * `queue` as `url`'s user, running requests from `allowedSenders`, and
 * waits until it consumes (its queue has a consumer).
 */
export async function startCeleryWorker(
  vhost: CeleryVhost,
  options: { url: string; queue: string; allowedSenders: string },
): Promise<Spawned> {
  const worker = spawn(PYTHON, [
    "-m",
    "celery",
    "-A",
    "worker_tasks",
    "worker",
    "--concurrency=2",
    "--without-gossip",
    "--without-mingle",
    "--without-heartbeat",
    "--loglevel=INFO",
    `--hostname=celery_c@${vhost.name}`,
  ], {
    cwd: CELERY_EXAMPLES,
    env: {
      AMQP_URL: options.url,
      CELERY_QUEUE: options.queue,
      ALLOWED_SENDERS: options.allowedSenders,
      PYTHONDONTWRITEBYTECODE: "1",
    },
  });
  const admin = await vhost.admin();
  try {
    await waitFor(
      async () => ((await admin.inspectQueue(options.queue))?.consumers ?? 0) > 0,
      `the Celery worker consuming ${options.queue}`,
      60_000,
      200,
    );
  } catch (error) {
    await worker.stop();
    throw new Error(`${(error as Error).message}\n${[...worker.out, ...worker.err].join("\n")}`);
  } finally {
    await admin.close();
  }
  return worker;
}
