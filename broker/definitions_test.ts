import assert from "node:assert/strict";
import { NAME_PATTERN as RUNTIME_NAME_PATTERN } from "../functions/_runtime/define_function.ts";
import { REPLY_QUEUE_PATTERN, replyQueueName } from "../functions/_runtime/contract/names.ts";
import {
  ADMIN_PERMISSIONS,
  buildDefinitions,
  DISPATCHER_PERMISSIONS,
  MAX_QUEUES,
  NAME_PATTERN,
  OPERATOR_PERMISSIONS,
  type Permissions,
  workerPermissions,
} from "./definitions.ts";

/** Whether RabbitMQ would allow `kind` on `resource`: it matches the whole name against the pattern. */
function allows(permissions: Permissions, kind: keyof Permissions, resource: string): boolean {
  return new RegExp(permissions[kind]).test(resource);
}

Deno.test("NAME_PATTERN is the runtime's, so queue names never carry regex syntax", () => {
  assert.equal(NAME_PATTERN.source, RUNTIME_NAME_PATTERN.source);
});

Deno.test("workerPermissions() covers the function's own queues and nothing of another", () => {
  const a = workerPermissions("queue_a");
  const own = ["queue_a", "queue_a.dlq", "queue_a.retry.400", "queue_a.control.0a1b2c3d"];
  const others = [
    "queue_b",
    "queue_b.dlq",
    "queue_ab",
    "queue_a_b",
    "xqueue_a",
    "queue_",
    "amq.gen-1",
  ];
  for (const queue of own) assert.ok(allows(a, "configure", queue), `configure ${queue}`);
  // It consumes its work and control queues, and binds (writes) only its control queue.
  // RabbitMQ asks for read on a queue declared with a dead-letter target.
  for (const queue of ["queue_a", "queue_a.control.0a1b2c3d", "queue_a.retry.400"]) {
    assert.ok(allows(a, "read", queue), `read ${queue}`);
  }
  assert.ok(allows(a, "write", "queue_a.control.0a1b2c3d"));
  assert.ok(!allows(a, "read", "queue_a.dlq"), "its dead letters are the operator's");
  for (const queue of ["queue_a.dlq", "queue_a.retry.400"]) {
    assert.ok(!allows(a, "write", queue), `no write on ${queue}`);
  }
  const undeclared = ["queue_a.anything", "queue_a.retry.x", "queue_a.control.zz", "queue_a.dlq.x"];
  for (const queue of undeclared) {
    assert.ok(!allows(a, "configure", queue), `no configure on ${queue}: it never declares it`);
  }
  for (const queue of others) {
    for (const kind of ["configure", "write", "read"] as const) {
      assert.ok(!allows(a, kind, queue), `no ${kind} on ${queue}`);
    }
  }
  assert.ok(allows(a, "write", "amq.default"), "publishes replies through the default exchange");
  assert.ok(allows(a, "read", "tasks.control"), "binds its control queue to the control exchange");
  assert.ok(!allows(a, "configure", "tasks.control"), "cannot delete the control exchange");
  assert.ok(!allows(a, "write", "tasks.control"), "cannot ping other workers");
  assert.ok(!allows(a, "write", "amq.direct"));
  assert.throws(() => workerPermissions("queue.*"), TypeError);
});

Deno.test("DISPATCHER_PERMISSIONS publish requests and pings, and declare, consume or delete only reply queues", () => {
  const d = DISPATCHER_PERMISSIONS;
  const own = replyQueueName();
  assert.match(own, REPLY_QUEUE_PATTERN);
  assert.ok(allows(d, "configure", own), "declares and deletes its reply queue");
  assert.ok(allows(d, "read", own), "consumes its reply queue");
  for (const queue of [`${own}x`, `x${own}`, "replies.queue_a", "replies.", `${own}.dlq`]) {
    assert.ok(!allows(d, "configure", queue), `no configure on ${queue}`);
    assert.ok(!allows(d, "read", queue), `no read on ${queue}`);
  }
  assert.ok(allows(d, "write", "amq.default"));
  assert.ok(allows(d, "write", "tasks.control"));
  for (
    const queue of [
      "queue_a",
      "queue_a.dlq",
      "queue_a.retry.200",
      "queue_b",
      "amq.rabbitmq.reply-to",
      "tasks.control",
    ]
  ) {
    assert.ok(!allows(d, "configure", queue), `no configure on ${queue}`);
    assert.ok(!allows(d, "read", queue), `no read on ${queue}`);
  }
  assert.ok(!allows(d, "write", "queue_a"), "cannot bind function queues");
  for (const other of [workerPermissions("queue_a"), OPERATOR_PERMISSIONS]) {
    assert.ok(!allows(other, "read", own), "no worker or operator reads a caller's replies");
    assert.ok(!allows(other, "configure", own), "nor declares or deletes its reply queue");
  }
  assert.ok(!allows(d, "write", "amq.topic"));
});

Deno.test("OPERATOR_PERMISSIONS read any function's dead letters and republish, nothing else", () => {
  const o = OPERATOR_PERMISSIONS;
  assert.ok(allows(o, "read", "queue_a.dlq"));
  assert.ok(allows(o, "read", "queue_b.dlq"));
  assert.ok(allows(o, "write", "amq.default"));
  for (const queue of ["queue_a", "queue_a.retry.5", "queue_a.control.0a1b2c3d", "tasks.control"]) {
    assert.ok(!allows(o, "read", queue), `no read on ${queue}`);
    assert.ok(!allows(o, "configure", queue), `no configure on ${queue}`);
  }
  assert.ok(!allows(o, "write", "tasks.control"));
});

Deno.test("buildDefinitions() makes users with hashes, their permissions and the control exchange", () => {
  const definitions = buildDefinitions([
    { name: "admin", passwordHash: "h1", tags: ["administrator"], permissions: ADMIN_PERMISSIONS },
    { name: "task_a", passwordHash: "h2", tags: [], permissions: workerPermissions("queue_a") },
  ]);
  assert.deepEqual(definitions.users, [
    {
      name: "admin",
      password_hash: "h1",
      hashing_algorithm: "rabbit_password_hashing_sha256",
      tags: ["administrator"],
    },
    {
      name: "task_a",
      password_hash: "h2",
      hashing_algorithm: "rabbit_password_hashing_sha256",
      tags: [],
    },
  ]);
  assert.deepEqual(definitions.vhosts, [{ name: "/" }]);
  assert.deepEqual(definitions.parameters, [{
    vhost: "/",
    component: "vhost-limits",
    name: "limits",
    value: { "max-queues": MAX_QUEUES },
  }]);
  assert.deepEqual(definitions.permissions[1], {
    user: "task_a",
    vhost: "/",
    configure: "^queue_a(\\.dlq|\\.retry\\.[0-9]+|\\.control\\.[0-9a-f]{8})?$",
    write: "^(amq\\.default|tasks\\.events|queue_a\\.control\\.[0-9a-f]{8})$",
    read: "^(queue_a(\\.retry\\.[0-9]+)?|queue_a\\.control\\.[0-9a-f]{8}|tasks\\.control)$",
  });
  assert.deepEqual(definitions.exchanges.map((e) => [e.name, e.type, e.durable]), [
    ["tasks.control", "fanout", true],
    ["tasks.events", "fanout", true],
  ]);
  const locked = buildDefinitions([{ name: "guest", passwordHash: "h3", tags: [] }]);
  assert.deepEqual(locked.permissions, [], "a user without permissions gets none");
});
