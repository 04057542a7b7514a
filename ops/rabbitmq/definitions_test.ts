import assert from "node:assert/strict";
import { NAME_PATTERN as RUNTIME_NAME_PATTERN } from "../../runtime/define_function.ts";
import {
  dashboardEventsQueueOf,
  REPLY_QUEUE_PATTERN,
  replyQueueName,
} from "../../core/contract/names.ts";
import {
  ADMIN_PERMISSIONS,
  buildDefinitions,
  celeryClientPermissions,
  celeryWorkerPermissions,
  DASHBOARD_PERMISSIONS,
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
  assert.ok(allows(a, "write", "queue_a"), "binds its queue to its Celery route");
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

/** Reply queue names Celery 5's rpc:// backend declares (kombu's oid_from: a UUID). */
const CELERY_REPLY_QUEUES = ["9f0e8c1e-7c55-3e4a-a8b3-1c2d3e4f5a6b", crypto.randomUUID()];

Deno.test("celeryClientPermissions() publish through the Celery routes and use its own reply queue only", () => {
  const c = celeryClientPermissions(["queue_a", "queue_b"]);
  for (const route of ["queue_a", "queue_b"]) {
    assert.ok(allows(c, "write", route), `publishes through the route '${route}'`);
    assert.ok(!allows(c, "configure", route), `cannot declare or delete '${route}'`);
    assert.ok(!allows(c, "read", route), `cannot consume '${route}'`);
  }
  for (const queue of CELERY_REPLY_QUEUES) {
    assert.ok(allows(c, "configure", queue), `declares its reply queue ${queue}`);
    assert.ok(allows(c, "read", queue), `consumes its reply queue ${queue}`);
    assert.ok(!allows(c, "write", queue), `cannot bind its reply queue ${queue} anywhere`);
  }
  const elsewhere = [
    "amq.default",
    "queue_a.dlq",
    "queue_ab",
    "queue_c",
    "tasks.control",
    "tasks.events",
    "celery",
    "celery.pidbox",
    "celeryev",
    "amq.rabbitmq.reply-to",
    `${CELERY_REPLY_QUEUES[0]}x`,
    CELERY_REPLY_QUEUES[0].toUpperCase(),
  ];
  for (const name of elsewhere) {
    for (const kind of ["configure", "write", "read"] as const) {
      assert.ok(!allows(c, kind, name), `no ${kind} on ${name}`);
    }
  }
  assert.equal(celeryClientPermissions([]).write, "^$", "no function: no route");
  assert.throws(() => celeryClientPermissions(["queue.*"]), TypeError);
});

Deno.test("celeryWorkerPermissions() declare and consume its queue, and reply through the default exchange", () => {
  const w = celeryWorkerPermissions("queue_c");
  assert.ok(allows(w, "configure", "queue_c"));
  assert.ok(allows(w, "read", "queue_c"));
  assert.ok(allows(w, "write", "amq.default"), "results and Celery's own retries");
  assert.ok(allows(w, "write", "queue_c"), "binds its queue to the exchange of its name");
  const elsewhere = [
    "queue_a",
    "queue_c.dlq",
    "queue_cd",
    "tasks.control",
    "tasks.events",
    "celery.pidbox",
    "celeryev",
    CELERY_REPLY_QUEUES[0],
  ];
  for (const name of elsewhere) {
    for (const kind of ["configure", "write", "read"] as const) {
      assert.ok(!allows(w, kind, name), `no ${kind} on ${name}`);
    }
  }
  assert.throws(() => celeryWorkerPermissions("Queue C"), TypeError);
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
    write: "^(amq\\.default|tasks\\.events|queue_a\\.control\\.[0-9a-f]{8}|queue_a)$",
    read: "^(queue_a(\\.retry\\.[0-9]+)?|queue_a\\.control\\.[0-9a-f]{8}|tasks\\.control)$",
  });
  assert.deepEqual(definitions.exchanges.map((e) => [e.name, e.type, e.durable]), [
    ["tasks.control", "fanout", true],
    ["tasks.events", "fanout", true],
  ]);
  const locked = buildDefinitions([{ name: "guest", passwordHash: "h3", tags: [] }]);
  assert.deepEqual(locked.permissions, [], "a user without permissions gets none");
});

Deno.test("DASHBOARD_PERMISSIONS watch: its own events queue, the events exchange, pings; nothing else", () => {
  const d = DASHBOARD_PERMISSIONS;
  const own = dashboardEventsQueueOf();
  assert.match(own, /^dashboard\.events\.[0-9a-f]{8}$/);
  assert.ok(allows(d, "configure", own), "declares its exclusive events queue");
  assert.ok(allows(d, "write", own), "binds it (write on the queue)");
  assert.ok(allows(d, "read", own), "consumes it");
  assert.ok(allows(d, "read", "tasks.events"), "binds from the events exchange");
  assert.ok(allows(d, "write", "tasks.control"), "pings the workers");
  for (
    const name of [
      "queue_a",
      "queue_a.dlq",
      "queue_a.retry.100",
      "queue_a.control.0a1b2c3d",
      "dashboard.events.zz",
      "dashboard.events.0a1b2c3d.x",
      "tasks.control",
    ]
  ) {
    assert.ok(!allows(d, "configure", name), `no configure on ${name}`);
    assert.ok(!allows(d, "read", name), `no read on ${name}`);
  }
  for (const name of ["amq.default", "tasks.events", "queue_a", "queue_a.dlq"]) {
    assert.ok(!allows(d, "write", name), `cannot publish to or bind ${name}`);
  }
});
