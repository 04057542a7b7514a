import assert from "node:assert/strict";
import { hashPassword } from "./hash_password.ts";
import {
  celeryClientPermissions,
  celeryWorkerPermissions,
  gatewayPermissions,
  MAX_QUEUES,
  schedulerPermissions,
  USER_LIMITS,
  workerPermissions,
} from "./definitions.ts";
import { DEFINITIONS_FILE, initSecrets, main } from "./secrets_init.ts";
import { withTempDir } from "../../tests/_temp_dir.ts";

const FUNCTIONS = [{ name: "task_a", queue: "queue_a" }, { name: "task_b", queue: "queue_b" }];

function saltOf(hash: string): Uint8Array {
  return Uint8Array.from(atob(hash), (c) => c.charCodeAt(0)).slice(0, 4);
}

async function passwords(dir: string): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  for (const user of ["admin", "dispatcher", "operator", "dashboard", "task_a", "task_b"]) {
    result[user] = (await Deno.readTextFile(`${dir}/${user}.password`)).trim();
  }
  return result;
}

/** Checks that every user of the definitions file has the hash of its password file. */
async function assertHashesMatch(dir: string) {
  const definitions = await readDefinitions(dir);
  const all = await passwords(dir);
  assert.deepEqual(
    definitions.users.map((u: { name: string }) => u.name),
    [...Object.keys(all), "guest"],
  );
  for (const user of definitions.users) {
    if (user.name === "guest") {
      assert.notEqual(await hashPassword("guest", saltOf(user.password_hash)), user.password_hash);
      continue;
    }
    assert.equal(
      await hashPassword(all[user.name], saltOf(user.password_hash)),
      user.password_hash,
    );
  }
  assert.deepEqual(
    definitions.permissions.map((p: { user: string }) => p.user),
    Object.keys(all),
    "guest has no permissions",
  );
}

const mode = async (path: string) => ((await Deno.stat(path)).mode ?? 0) & 0o777;

/** Who the workers' password files go to: uid 65532 as root, else this process's user. */
const WORKER_OWNER = Deno.uid() === 0
  ? { uid: 65532, gid: 65532 }
  : { uid: Deno.uid()!, gid: Deno.gid()! };

/** The definitions file initSecrets() wrote into `dir`. */
async function readDefinitions(dir: string) {
  return JSON.parse(await Deno.readTextFile(`${dir}/${DEFINITIONS_FILE}`));
}

/** The permissions granted to `user` in `definitions`, without its name and vhost. */
function permissionsOf(definitions: { permissions: Record<string, string>[] }, user: string) {
  const { user: _, vhost: __, ...granted } = definitions.permissions.find((p) => p.user === user)!;
  return granted;
}

/** Runs `fn` with console.log silenced. */
async function quietly<T>(fn: () => Promise<T>): Promise<T> {
  const original = console.log;
  console.log = () => {};
  try {
    return await fn();
  } finally {
    console.log = original;
  }
}

/** Runs `fn`, and resolves with the lines it wrote with console.error. */
async function errorsOf(fn: () => Promise<void>): Promise<string[]> {
  const errors: string[] = [];
  const original = console.error;
  console.error = (line: string) => errors.push(line);
  try {
    await fn();
  } finally {
    console.error = original;
  }
  return errors;
}

Deno.test("initSecrets() creates a password per user and the definitions, printing no password", async () => {
  await withTempDir(async (dir) => {
    const lines: string[] = [];
    const owner = WORKER_OWNER;
    const report = await initSecrets({
      dir,
      functions: FUNCTIONS,
      workerOwner: owner,
      log: (line) => lines.push(line),
    });
    assert.deepEqual(report.created.sort(), [
      "admin.password",
      "dashboard.password",
      "dispatcher.password",
      "operator.password",
      "task_a.password",
      "task_b.password",
    ]);
    assert.deepEqual(report.kept, []);
    const all = await passwords(dir);
    assert.equal(new Set(Object.values(all)).size, 6, "each user has a password of its own");
    for (const password of Object.values(all)) assert.match(password, /^[A-Za-z0-9_-]{32}$/);
    await assertHashesMatch(dir);
    assert.equal(await mode(`${dir}/task_a.password`), 0o400);
    assert.equal((await Deno.stat(`${dir}/task_a.password`)).uid, owner.uid);
    assert.equal(await mode(`${dir}/dispatcher.password`), 0o600);
    assert.equal((await Deno.stat(`${dir}/dispatcher.password`)).uid, (await Deno.stat(dir)).uid);
    assert.equal(await mode(`${dir}/${DEFINITIONS_FILE}`), 0o644);
    const printed = lines.join("\n");
    assert.match(printed, /created task_a\.password \(owner \d+:\d+, mode 0400\)/);
    for (const password of Object.values(all)) assert.ok(!printed.includes(password));
    const definitions = await Deno.readTextFile(`${dir}/${DEFINITIONS_FILE}`);
    for (const password of Object.values(all)) assert.ok(!definitions.includes(password));
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".tmp")),
      [],
    );
  });
});

Deno.test("initSecrets() keeps existing passwords, its own and given ones, on every run", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/task_b.password`, "given by the operator\n");
    const log = () => {};
    await initSecrets({ dir, functions: FUNCTIONS, log });
    const first = await passwords(dir);
    assert.equal(first.task_b, "given by the operator");
    const again = await initSecrets({ dir, functions: FUNCTIONS, log });
    assert.deepEqual(again.created, []);
    assert.deepEqual(await passwords(dir), first);
    await assertHashesMatch(dir);
    // Rotation: delete a file, and the next run makes a new password for it
    // alone, and rewrites the definitions where a running broker mounts them.
    const mounted = (await Deno.stat(`${dir}/${DEFINITIONS_FILE}`)).ino;
    await Deno.remove(`${dir}/task_a.password`);
    const rotated = await initSecrets({ dir, functions: FUNCTIONS, log });
    assert.deepEqual(rotated.created, ["task_a.password"]);
    const after = await passwords(dir);
    assert.notEqual(after.task_a, first.task_a);
    assert.equal(after.task_b, first.task_b);
    await assertHashesMatch(dir);
    assert.equal((await Deno.stat(`${dir}/${DEFINITIONS_FILE}`)).ino, mounted, "same file");
  });
});

Deno.test("initSecrets() refuses names that would clash or widen a permission", async () => {
  await withTempDir(async (dir) => {
    const run = (functions: { name: string; queue: string }[]) =>
      initSecrets({ dir, functions, log: () => {} });
    await assert.rejects(
      run([{ name: "dispatcher", queue: "queue_d" }]),
      /that user exists already/,
    );
    await assert.rejects(
      run([{ name: "task_a", queue: "q" }, { name: "task_b", queue: "q" }]),
      /queue 'q' belongs to another function/,
    );
    await assert.rejects(run([{ name: "task_a", queue: "queue.*" }]), /is not lower_snake_case/);
    await assert.rejects(
      initSecrets({ dir: `${dir}/missing`, functions: [], log: () => {} }),
      /cannot be opened .*: create the directory$/,
    );
  });
});

Deno.test("initSecrets() adds a Celery worker's user and the Celery clients' user when asked", async () => {
  await withTempDir(async (dir) => {
    const owner = WORKER_OWNER;
    const report = await initSecrets({
      dir,
      functions: FUNCTIONS,
      celeryFunctions: [{ name: "task_c", queue: "queue_c" }],
      celeryClient: true,
      workerOwner: owner,
      log: () => {},
    });
    assert.deepEqual(report.users, [
      "admin",
      "dispatcher",
      "operator",
      "dashboard",
      "task_a",
      "task_b",
      "task_c",
      "celery_client",
    ]);
    const definitions = await readDefinitions(dir);
    assert.deepEqual(permissionsOf(definitions, "task_c"), celeryWorkerPermissions("queue_c"));
    assert.deepEqual(
      permissionsOf(definitions, "celery_client"),
      celeryClientPermissions(["queue_a", "queue_b"]),
      "the routes of the Deno functions, not the Celery worker's queue",
    );
    const limitsOf = (user: string) =>
      definitions.users.find((u: { name: string }) => u.name === user).limits;
    assert.deepEqual(limitsOf("celery_client"), USER_LIMITS.celery_client);
    assert.deepEqual(limitsOf("dashboard"), USER_LIMITS.dashboard);
    for (const user of ["admin", "dispatcher", "operator", "task_a", "task_c"]) {
      assert.equal(limitsOf(user), undefined, `${user} has no user limits`);
    }
    assert.deepEqual(
      definitions.parameters.map((p: { component: string; name: string }) => p.name),
      ["limits", "celery-replies", "caller-replies", "named-replies", "dashboard-events"],
    );
    assert.equal(definitions.parameters[0].value["max-queues"], MAX_QUEUES);
    // The Celery worker's container reads its password as the Deno workers do;
    // Celery clients run where the dispatcher runs.
    assert.equal(await mode(`${dir}/task_c.password`), 0o400);
    assert.equal((await Deno.stat(`${dir}/task_c.password`)).uid, owner.uid);
    assert.equal(await mode(`${dir}/celery_client.password`), 0o600);
    await assert.rejects(
      initSecrets({
        dir,
        functions: FUNCTIONS,
        celeryFunctions: [{ name: "task_a", queue: "queue_c" }],
        log: () => {},
      }),
      /'task_a' as that user exists already/,
    );
    await assert.rejects(
      initSecrets({
        dir,
        functions: FUNCTIONS,
        celeryFunctions: [{ name: "celery_client", queue: "queue_c" }],
        log: () => {},
      }),
      /that user exists already/,
    );
  });
});

Deno.test("initSecrets() adds the scheduler's user when asked, read by its containers, binding the scheduled queues only", async () => {
  await withTempDir(async (dir) => {
    const owner = WORKER_OWNER;
    const report = await initSecrets({
      dir,
      functions: FUNCTIONS,
      scheduler: { queues: ["queue_b"] },
      workerOwner: owner,
      log: () => {},
    });
    assert.deepEqual(report.users.at(-1), "scheduler");
    const definitions = await readDefinitions(dir);
    assert.deepEqual(permissionsOf(definitions, "scheduler"), schedulerPermissions(["queue_b"]));
    assert.equal(await mode(`${dir}/scheduler.password`), 0o400);
    assert.equal((await Deno.stat(`${dir}/scheduler.password`)).uid, owner.uid);
    const without = await initSecrets({ dir, functions: FUNCTIONS, log: () => {} });
    assert.ok(!without.users.includes("scheduler"), "only when asked");
  });
});

Deno.test("main() reads --scheduler and each --scheduled queue", async () => {
  await withTempDir(async (dir) => {
    assert.equal(
      await quietly(() =>
        main(["--dir", dir, "--function=task_a=queue_a", "--scheduler", "--scheduled=queue_a"])
      ),
      0,
    );
    const definitions = await readDefinitions(dir);
    const scheduler = definitions.permissions.find((p: { user: string }) => p.user === "scheduler");
    assert.equal(scheduler.write, schedulerPermissions(["queue_a"]).write);
  });
});

Deno.test("initSecrets() narrows each function's retry queues to the ladder given, and takes any function name", async () => {
  await withTempDir(async (dir) => {
    await initSecrets({
      dir,
      functions: [{ name: "constructor", queue: "queue_a" }],
      retryDelaysMs: [100, 200],
      log: () => {},
    });
    const definitions = await readDefinitions(dir);
    const user = definitions.users.find((u: { name: string }) => u.name === "constructor");
    assert.equal(user.limits, undefined, "no limits from Object.prototype");
    const granted = permissionsOf(definitions, "constructor");
    assert.deepEqual(granted, workerPermissions("queue_a", { retryDelaysMs: [100, 200] }));
    assert.match(granted.configure, /retry\\\.\(100\|200\)/);
  });
});

Deno.test("main() exits 2 for bad arguments", async () => {
  const errors = await errorsOf(async () => {
    assert.equal(await main(["--function", "task_a"]), 2);
    assert.equal(await main(["--dir", "/tmp", "--function", "task_a"]), 2);
    assert.equal(await main(["--dir", "/tmp", "--worker-owner", "nobody"]), 2);
    assert.equal(await main(["--dir", "/tmp", "--celery-function", "task_c"]), 2);
  });
  assert.deepEqual(errors, [
    "secrets-init: Cannot run without --dir: name the secrets directory",
    "secrets-init: Cannot use --function 'task_a': give user=queue, such as task_a=queue_a",
    "secrets-init: Cannot use --worker-owner 'nobody': give uid:gid, such as 65532:65532",
    "secrets-init: Cannot use --celery-function 'task_c': give user=queue, such as task_a=queue_a",
  ]);
});

Deno.test("main() makes the topic permissions of --triggers, --emits and --emitter, and refuses bad ones", async () => {
  await withTempDir(async (dir) => {
    assert.equal(
      await quietly(() =>
        main([
          `--dir=${dir}`,
          "--function=task_a=queue_a",
          "--function=task_b=queue_b",
          "--triggers=task_a=order.created,order.*",
          "--emits=task_a=order.priced",
          "--emitter=dispatcher=order.#",
        ])
      ),
      0,
    );
    const definitions = await readDefinitions(dir);
    const topics = new Map(
      definitions.topic_permissions.map((
        { user, vhost: _, ...rest }: { user: string; vhost: string },
      ) => [user, rest]),
    );
    assert.deepEqual(topics.get("task_a"), {
      exchange: "events",
      write: "^(order\\.priced)$",
      read: "^(order\\.created|order\\.\\*)$",
    });
    assert.equal(
      (topics.get("dispatcher") as { write: string }).write,
      "^order(\\.[A-Za-z0-9_-]+)*$",
    );
    assert.equal(
      topics.has("task_b"),
      false,
      "a function without events has no use of the exchange",
    );
    const taskB = definitions.permissions.find((p: { user: string }) => p.user === "task_b");
    assert.doesNotMatch(taskB.read, /\|events\)/);
    assert.deepEqual(
      definitions.exchanges.find((e: { name: string }) => e.name === "events")?.type,
      "topic",
    );
  });
  const errors = await errorsOf(async () => {
    assert.equal(await main(["--dir", "/tmp", "--triggers", "task_a=order created"]), 2);
    assert.equal(await main(["--dir", "/tmp", "--emits", "task_a=order.*"]), 2);
  });
  assert.match(
    errors[0],
    /--triggers 'task_a=order created' as "order created" is not a topic pattern/,
  );
  assert.match(errors[1], /--emits 'task_a=order\.\*' as 'order\.\*' is not an event type/);
});

Deno.test("initSecrets() adds the gateway's user when asked: it calls every function and emits its grant", async () => {
  await withTempDir(async (dir) => {
    const owner = WORKER_OWNER;
    const report = await initSecrets({
      dir,
      functions: FUNCTIONS,
      gateway: true,
      workerOwner: owner,
      events: { emitters: { gateway: ["demo.#"] } },
      log: () => {},
    });
    assert.ok(report.users.includes("gateway"));
    const definitions = await readDefinitions(dir);
    assert.deepEqual(
      permissionsOf(definitions, "gateway"),
      gatewayPermissions(["queue_a", "queue_b"]),
    );
    const topic = definitions.topic_permissions.find((p: { user: string }) => p.user === "gateway");
    assert.ok(
      new RegExp(topic.write).test("demo.greet") && !new RegExp(topic.write).test("order.x"),
    );
    assert.equal(await mode(`${dir}/gateway.password`), 0o400);
    const without = await initSecrets({ dir, functions: FUNCTIONS, log: () => {} });
    assert.ok(!without.users.includes("gateway"), "only when asked");
  });
});
