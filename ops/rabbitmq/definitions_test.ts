import assert from "node:assert/strict";
import { NAME_PATTERN as RUNTIME_NAME_PATTERN } from "../../runtime/define_function.ts";
import { REPLY_QUEUE_PATTERN, replyQueueName } from "../../core/contract/names.ts";
import {
  CANCELLATIONS_STREAM_ARGUMENTS,
  CANCELLATIONS_STREAM_OPTIONS,
} from "../../core/contract/cancel.ts";
import { queueArguments } from "../../core/broker/amqp/queue_arguments.ts";
import {
  GATEWAY_CALLS_STREAM_ARGUMENTS,
  GATEWAY_CALLS_STREAM_OPTIONS,
} from "../../core/contract/gateway_calls.ts";
import {
  NAMED_REPLY_QUEUE_MAX_IDLE_MS,
  NAMED_REPLY_QUEUE_MAX_LENGTH,
  namedReplyQueueOf,
} from "../../core/contract/named_callers.ts";
import {
  ADMIN_PERMISSIONS,
  buildDefinitions,
  CELERY_REPLY_QUEUE,
  celeryClientPermissions,
  celeryWorkerPermissions,
  CLIENT_QUEUE_EXPIRES_MS,
  DASHBOARD_EVENT_QUEUES,
  DASHBOARD_PERMISSIONS,
  dispatcherPermissions,
  gatewayPermissions,
  MAX_QUEUES,
  NAME_PATTERN,
  OPERATOR_PERMISSIONS,
  operatorPolicies,
  type Permissions,
  RETRY_QUEUES_PER_FUNCTION,
  schedulerPermissions,
  topicPermissionsOf,
  USER_LIMITS,
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

Deno.test("dispatcherPermissions() publish requests and pings, and declare, consume or delete only reply queues", () => {
  const d = dispatcherPermissions(["queue_a", "queue_b"]);
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
  for (const other of [workerPermissions("queue_a"), OPERATOR_PERMISSIONS]) {
    assert.ok(!allows(other, "read", own), "no worker or operator reads a caller's replies");
    assert.ok(!allows(other, "configure", own), "nor declares or deletes its reply queue");
  }
  assert.ok(!allows(d, "write", "amq.topic"));
  assert.throws(() => dispatcherPermissions(["queue.*"]), TypeError);
  // A named caller's queue, its own user's only.
  const named = namedReplyQueueOf("dispatcher", "nightly");
  assert.ok(allows(d, "configure", named) && allows(d, "read", named), "its named queue");
  for (const queue of [namedReplyQueueOf("operator", "nightly"), `${named}.x`, "replies.named."]) {
    assert.ok(!allows(d, "configure", queue), `no configure on ${queue}`);
    assert.ok(!allows(d, "read", queue), `no read on ${queue}`);
  }
  for (const other of [workerPermissions("queue_a"), OPERATOR_PERMISSIONS]) {
    assert.ok(!allows(other, "read", named), "no worker or operator reads a named queue");
  }
});

Deno.test("each tool may check passively (RabbitMQ 4.3.1: any permission) exactly the queues it checks", () => {
  // What each tool inspects: dispatch and load wait for workers on the work
  // queues, status counts those and their dead letters, dlq its dead letters.
  const queues = ["queue_a", "queue_b", "queue_c"];
  const any = (p: Permissions, name: string) =>
    allows(p, "configure", name) || allows(p, "write", name) || allows(p, "read", name);
  const dispatcher = dispatcherPermissions(queues);
  for (const queue of queues) {
    for (const checked of [queue, `${queue}.dlq`]) {
      assert.ok(allows(dispatcher, "write", checked), `dispatcher checks ${checked}`);
      assert.ok(!allows(dispatcher, "configure", checked), `dispatcher cannot delete ${checked}`);
      assert.ok(!allows(dispatcher, "read", checked), `dispatcher cannot drain ${checked}`);
    }
    assert.ok(allows(OPERATOR_PERMISSIONS, "read", `${queue}.dlq`), `operator checks ${queue}.dlq`);
    assert.ok(!any(OPERATOR_PERMISSIONS, queue), `operator has nothing on ${queue}`);
  }
  for (const name of ["queue_d", "queue_a.retry.200", "queue_a.control.0a1b2c3d", "queue_ab"]) {
    assert.ok(!allows(dispatcher, "write", name), `dispatcher has nothing on ${name}`);
  }
  assert.deepEqual(
    dispatcherPermissions([]).write,
    "^(amq\\.default|tasks\\.control|tasks\\.events|events|tasks\\.cancellations)$",
    "no function, no queue but the cancellations stream, which deno task cancel checks (events: what its topic permission grants)",
  );
  assert.ok(allows(OPERATOR_PERMISSIONS, "write", "tasks.cancellations"), "operator checks it");
  assert.ok(allows(workerPermissions("queue_a"), "read", "tasks.cancellations"), "workers read it");

  // Write on a queue lets a user bind it to an exchange it may read, and a
  // binding is a way in for whoever publishes to that exchange. The
  // dispatcher may read its reply-queue names only, and no user of the
  // stack but the administrator may publish to one of those.
  const sample = replyQueueName();
  const stackExchanges = [
    "amq.default",
    "amq.direct",
    "amq.fanout",
    "amq.topic",
    "amq.headers",
    "amq.match",
    "tasks.control",
    "tasks.events",
    ...queues, // the Celery route of each queue
  ];
  for (const exchange of stackExchanges) {
    assert.ok(!allows(dispatcher, "read", exchange), `dispatcher cannot bind from ${exchange}`);
  }
  const others = {
    worker: workerPermissions("queue_a"),
    celeryWorker: celeryWorkerPermissions("queue_c"),
    celeryClient: celeryClientPermissions(["queue_a", "queue_b"]),
    operator: OPERATOR_PERMISSIONS,
    dashboard: DASHBOARD_PERMISSIONS,
    dispatcher,
  };
  for (const [who, permissions] of Object.entries(others)) {
    assert.ok(!allows(permissions, "write", sample), `${who} cannot publish to ${sample}`);
    const named = namedReplyQueueOf("dispatcher", "x");
    assert.ok(!allows(permissions, "write", named), `${who} cannot publish to ${named}`);
  }
  // Nor can anyone bind from the stream but the administrator: it is a queue, not an exchange.
  for (const [who, permissions] of Object.entries(others)) {
    assert.ok(!allows(permissions, "configure", "tasks.cancellations"), `${who} cannot delete it`);
  }

  // The dashboard reads the events exchange: write on a function's queue
  // would let it bind that queue there and pour task events into it, and
  // read or configure would let it drain or delete it. It gets none.
  assert.ok(allows(DASHBOARD_PERMISSIONS, "read", "tasks.events"));
  for (const queue of queues) {
    for (const name of [queue, `${queue}.dlq`]) {
      assert.ok(!any(DASHBOARD_PERMISSIONS, name), `dashboard has nothing on ${name}`);
    }
  }
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
  assert.deepEqual(definitions.parameters[0], {
    vhost: "/",
    component: "vhost-limits",
    name: "limits",
    value: { "max-queues": MAX_QUEUES },
  });
  assert.deepEqual(
    definitions.parameters.slice(1).map((p) => [p.component, p.name]),
    [
      ["operator_policy", "celery-replies"],
      ["operator_policy", "caller-replies"],
      ["operator_policy", "named-replies"],
      ["operator_policy", "dashboard-events"],
    ],
  );
  assert.deepEqual(definitions.permissions[1], {
    user: "task_a",
    vhost: "/",
    configure: "^queue_a(\\.dlq|\\.retry\\.[0-9]+|\\.control\\.[0-9a-f]{8})?$",
    write: "^(amq\\.default|tasks\\.events|queue_a\\.control\\.[0-9a-f]{8}|queue_a)$",
    read:
      "^(queue_a(\\.retry\\.[0-9]+)?|queue_a\\.control\\.[0-9a-f]{8}|tasks\\.control|tasks\\.cancellations)$",
  });
  assert.deepEqual(definitions.exchanges.map((e) => [e.name, e.type, e.durable]), [
    ["tasks.control", "fanout", true],
    ["tasks.events", "fanout", true],
    ["events", "topic", true],
    ["tasks.schedule", "direct", true],
  ]);
  // What the broker layer would declare, though the definitions may not import it.
  assert.deepEqual(
    { ...CANCELLATIONS_STREAM_ARGUMENTS },
    queueArguments(CANCELLATIONS_STREAM_OPTIONS),
  );
  assert.deepEqual(
    { ...GATEWAY_CALLS_STREAM_ARGUMENTS },
    queueArguments(GATEWAY_CALLS_STREAM_OPTIONS),
  );
  assert.deepEqual(definitions.queues, [{
    name: "tasks.cancellations",
    vhost: "/",
    durable: true,
    auto_delete: false,
    arguments: {
      "x-queue-type": "stream",
      "x-max-age": "86400s",
      "x-max-length-bytes": 64 * 1024 * 1024,
      "x-stream-max-segment-size-bytes": 1024 * 1024,
    },
  }, {
    // The gateway replicas' shared record: an hour of calls and Idempotency-Keys.
    name: "gateway.calls",
    vhost: "/",
    durable: true,
    auto_delete: false,
    arguments: {
      "x-queue-type": "stream",
      "x-max-age": "3600s",
      "x-max-length-bytes": 256 * 1024 * 1024,
      "x-stream-max-segment-size-bytes": 4 * 1024 * 1024,
    },
  }]);
  const locked = buildDefinitions([{ name: "guest", passwordHash: "h3", tags: [] }]);
  assert.deepEqual(locked.permissions, [], "a user without permissions gets none");
});

Deno.test("DASHBOARD_PERMISSIONS watch: its own events queue, the events exchange, pings; nothing else", () => {
  const d = DASHBOARD_PERMISSIONS;
  assert.equal(DASHBOARD_EVENT_QUEUES.length, 8);
  for (const own of DASHBOARD_EVENT_QUEUES) {
    assert.ok(allows(d, "configure", own), `declares its exclusive events queue ${own}`);
    assert.ok(allows(d, "write", own), "binds it (write on the queue)");
    assert.ok(allows(d, "read", own), "consumes it");
  }
  for (const name of ["dashboard.events.8", "dashboard.events.0a1b2c3d", "dashboard.events.00"]) {
    assert.ok(!allows(d, "configure", name), `no ninth queue: ${name}`);
  }
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

Deno.test("workerPermissions() with a retry ladder grants exactly its retry queues", () => {
  const ladder = Array.from({ length: RETRY_QUEUES_PER_FUNCTION }, (_, i) => 100 * 2 ** (i % 16));
  const a = workerPermissions("queue_a", { retryDelaysMs: [...ladder, 100] });
  for (const ms of ladder) {
    assert.ok(allows(a, "configure", `queue_a.retry.${ms}`), `${ms}`);
    assert.ok(allows(a, "read", `queue_a.retry.${ms}`), `${ms}`);
  }
  for (const name of ["queue_a.retry.101", "queue_a.retry.1000", "queue_a.retry.0100"]) {
    assert.ok(!allows(a, "configure", name), `not on the ladder: ${name}`);
    assert.ok(!allows(a, "read", name), `not on the ladder: ${name}`);
  }
  for (const name of ["queue_a", "queue_a.dlq", "queue_a.control.0a1b2c3d"]) {
    assert.ok(allows(a, "configure", name), name);
  }
  assert.equal(workerPermissions("queue_a").configure, workerPermissions("queue_a", {}).configure);
  for (const bad of [[], [1.5], [-1], [Number.NaN]]) {
    assert.throws(() => workerPermissions("queue_a", { retryDelaysMs: bad }), TypeError);
  }
});

Deno.test("operator policies cover every name a client may declare and the budget cannot count", () => {
  const policies = operatorPolicies();
  const matching = (name: string) => policies.filter((p) => new RegExp(p.pattern).test(name));
  const clientMade = [
    crypto.randomUUID(),
    replyQueueName(),
    ...DASHBOARD_EVENT_QUEUES,
  ];
  for (const name of clientMade) {
    const [policy, ...more] = matching(name);
    assert.ok(policy, `a policy for ${name}`);
    assert.equal(more.length, 0, `one policy for ${name}`);
    assert.equal(policy.definition.expires, CLIENT_QUEUE_EXPIRES_MS);
  }
  assert.deepEqual(matching("tasks.cancellations"), [], "the stream keeps its own retention");
  assert.deepEqual(matching("gateway.calls"), [], "so does the gateway replicas' record");
  // And for every name their users may configure: none left unbounded.
  assert.equal(
    policies.find((p) => p.pattern === celeryClientPermissions(["queue_a"]).configure)?.name,
    "celery-replies",
  );
  for (
    const [permissions, sample] of [
      [celeryClientPermissions(["queue_a"]), crypto.randomUUID()],
      [dispatcherPermissions(["queue_a"]), replyQueueName()],
      [dispatcherPermissions(["queue_a"]), namedReplyQueueOf("dispatcher", "run-1")],
    ] as const
  ) {
    assert.ok(allows(permissions, "configure", sample));
    const [policy, ...more] = matching(sample);
    assert.ok(policy?.definition.expires, `an expiring policy bounds ${sample}`);
    assert.equal(more.length, 0);
  }
  const named = policies.find((p) => p.name === "named-replies")!;
  assert.equal(named.definition.expires, NAMED_REPLY_QUEUE_MAX_IDLE_MS, "a day for its caller");
  assert.equal(named.definition["max-length"], NAMED_REPLY_QUEUE_MAX_LENGTH);
  assert.ok(named.definition["max-length-bytes"]! > 0);
  const events = policies.find((p) => p.name === "dashboard-events")!;
  assert.equal(events.pattern, DASHBOARD_PERMISSIONS.configure);
  assert.ok(events.definition["max-length"]! > 0 && events.definition["max-length-bytes"]! > 0);
  const celery = policies.find((p) => p.name === "celery-replies")!;
  assert.equal(celery.pattern, `^${CELERY_REPLY_QUEUE}$`);
  assert.ok(celery.definition["max-length"]! > 0);
  assert.equal(
    policies.find((p) => p.name === "caller-replies")!.definition["max-length"],
    undefined,
    "a caller's replies are never dropped",
  );
  for (const name of ["queue_a", "queue_a.dlq", "queue_a.retry.100", "queue_a.control.0a1b2c3d"]) {
    assert.deepEqual(matching(name), [], `no policy touches ${name}`);
  }
  assert.equal(operatorPolicies(5000)[0].definition.expires, 5000);
});

Deno.test("buildDefinitions() gives users their limits, and the vhost asked for", () => {
  const definitions = buildDefinitions([
    { name: "dashboard", passwordHash: "h", tags: [], limits: USER_LIMITS.dashboard },
    { name: "task_a", passwordHash: "h", tags: [] },
  ], { vhost: "test_vhost", clientQueueExpiresMs: 1000 });
  assert.deepEqual(definitions.users[0].limits, {
    "max-connections": DASHBOARD_EVENT_QUEUES.length,
    "max-channels": 64,
  });
  assert.equal("limits" in definitions.users[1], false);
  assert.deepEqual(definitions.vhosts, [{ name: "test_vhost" }]);
  assert.ok(definitions.parameters.every((p) => p.vhost === "test_vhost"));
  assert.ok(definitions.exchanges.every((e) => e.vhost === "test_vhost"));
  const policy = definitions.parameters[1];
  assert.equal(policy.component === "operator_policy" && policy.value.definition.expires, 1000);
  assert.deepEqual(Object.keys(USER_LIMITS).sort(), ["celery_client", "dashboard"]);
});

Deno.test("schedulerPermissions() fire through the schedule exchange into the scheduled queues only, and hold the state queue", () => {
  const s = schedulerPermissions(["queue_b", "queue_a"]);
  assert.ok(allows(s, "write", "tasks.schedule"), "publishes ticks and its state");
  assert.ok(allows(s, "read", "tasks.schedule"), "binds queues from it");
  for (const queue of ["queue_a", "queue_b"]) {
    assert.ok(allows(s, "write", queue), `binds ${queue} to the schedule exchange`);
    assert.ok(!allows(s, "read", queue), `never consumes ${queue}`);
    assert.ok(!allows(s, "configure", queue), `never declares or deletes ${queue}`);
  }
  assert.ok(allows(s, "configure", "tasks.scheduler"));
  assert.ok(allows(s, "read", "tasks.scheduler"));
  assert.ok(allows(s, "write", "tasks.scheduler"), "binds its queue to the schedule exchange");
  assert.ok(allows(s, "write", "tasks.events"), "tells dashboards which replica fires");
  for (
    const other of ["queue_c", "queue_a.dlq", "tasks.schedulerx", "amq.default", "tasks.control"]
  ) {
    assert.ok(!allows(s, "write", other), `no write on ${other}`);
  }
  assert.ok(!allows(s, "configure", "tasks.schedule"), "cannot delete the schedule exchange");
  assert.deepEqual(
    schedulerPermissions([]).write,
    "^(tasks\\.schedule|tasks\\.scheduler|tasks\\.events)$",
  );
  assert.throws(() => schedulerPermissions(["queue.*"]), TypeError);
  // Only the scheduler writes the exchange a worker takes as the scheduler's route.
  for (
    const [who, permissions] of [
      ["worker", workerPermissions("queue_a")],
      ["dispatcher", dispatcherPermissions(["queue_a"])],
      ["operator", OPERATOR_PERMISSIONS],
      ["dashboard", DASHBOARD_PERMISSIONS],
      ["celery client", celeryClientPermissions(["queue_a"])],
      ["celery worker", celeryWorkerPermissions("queue_a")],
    ] as const
  ) {
    assert.ok(!allows(permissions, "write", "tasks.schedule"), `${who} may not`);
    assert.ok(!allows(permissions, "read", "tasks.schedule"), `${who} binds nothing to it`);
  }
});

Deno.test("topicPermissionsOf() lets a function emit its type and bind its triggers, an emitter its grant", () => {
  const fn = topicPermissionsOf({ triggers: ["order.created", "order.*"], emits: "order.priced" });
  assert.deepEqual(fn, {
    exchange: "events",
    write: "^(order\\.priced)$",
    read: "^(order\\.created|order\\.\\*)$",
  });
  assert.ok(new RegExp(fn.read).test("order.*"), "binds its pattern as written");
  assert.ok(!new RegExp(fn.read).test("order.paid"), "and no other binding key");
  assert.ok(!new RegExp(fn.write).test("order.created"));
  const dispatcher = topicPermissionsOf({ emitterPatterns: ["demo.#", "order.*"] });
  for (const type of ["demo", "demo.greet", "order.created"]) {
    assert.ok(new RegExp(dispatcher.write).test(type), type);
  }
  assert.ok(!new RegExp(dispatcher.write).test("order.created.v2"));
  assert.equal(topicPermissionsOf({}).write, "^$", "no grant, nothing");
  const worker = workerPermissions("queue_a", { triggers: ["a.b"], emits: "a.c" });
  assert.ok(new RegExp(worker.read).test("events") && new RegExp(worker.write).test("events"));
  const plain = workerPermissions("queue_a");
  assert.ok(!new RegExp(plain.read).test("events") && !new RegExp(plain.write).test("events"));
});

Deno.test("gatewayPermissions() call, cancel, emit and share its record; no pings, task events, dead letters or other callers' replies", () => {
  const g = gatewayPermissions(["queue_b", "queue_a"]);
  const own = replyQueueName();
  const named = namedReplyQueueOf("gateway", "g1");
  for (const queue of [own, named, namedReplyQueueOf("gateway", "calls")]) {
    assert.ok(allows(g, "configure", queue) && allows(g, "read", queue), queue);
  }
  // The shared record: read (and appended to through the default exchange), not reconfigured.
  assert.ok(allows(g, "read", "gateway.calls"));
  assert.ok(!allows(g, "configure", "gateway.calls"), "the definitions make the stream");
  for (const near of ["gateway.calls2", "gatewayxcalls", "tasks.cancellations"]) {
    assert.ok(!allows(g, "read", near), `no read on ${near}`);
  }
  for (const exchange of ["amq.default", "events", "tasks.cancellations", "queue_a", "queue_b"]) {
    assert.ok(allows(g, "write", exchange), `write on ${exchange}`);
  }
  for (const resource of ["tasks.control", "tasks.events", "queue_a.dlq", "queue_c", "amq.topic"]) {
    assert.ok(!allows(g, "write", resource), `no write on ${resource}`);
  }
  for (
    const queue of ["queue_a", "queue_a.dlq", namedReplyQueueOf("dispatcher", "g1"), "tasks.events"]
  ) {
    assert.ok(!allows(g, "configure", queue), `no configure on ${queue}`);
    assert.ok(!allows(g, "read", queue), `no read on ${queue}`);
  }
});
