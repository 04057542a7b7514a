import assert from "node:assert/strict";
import { type Broker, MemoryBroker } from "../core/broker/mod.ts";
import { withTempDir } from "../tests/_temp_dir.ts";
import { main } from "./dlq_main.ts";

async function run(
  args: string[],
  connect: (url: string) => Promise<Broker>,
  env: Record<string, string> = {},
) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    env: (name) => env[name],
    color: { out: false, err: false },
    connect,
  });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

const CONFIG = "functions:\n  task_x: { queue: queue_x, user: workers_x }\n" +
  "scenarios:\n  s: { tasks: [{ task: task_x }] }\n";

/** queue_x.dlq with a letter of each kind, as the workers (user workers_x) and the broker leave them. */
async function setup(hub: MemoryBroker) {
  const admin = hub.connect("admin");
  await admin.declareQueue("queue_x");
  await admin.declareQueue("queue_x.dlq");
  await admin.declareQueue("queue_t", { messageTtlMs: 1, deadLetterQueue: "queue_x.dlq" });
  const letter = (user: string, id: string, headers: Record<string, unknown>) =>
    hub.connect(user).publish("queue_x.dlq", {
      body: new TextEncoder().encode(`{"task":"task_x","payload":{"id":"${id}"}}`),
      properties: { messageId: id, headers },
    });
  await letter("workers_x", "exhausted-1", {
    "x-dlq-reason": "exhausted",
    "x-dlq-error-type": "SimulatedFailure",
    "x-dlq-error-message": "failed",
    "x-dlq-attempts": 3,
    "x-dlq-sender": "dispatcher",
    "x-dlq-allowed-senders": "admin,dispatcher,operator,workers_x",
    "x-dlq-queue": "queue_elsewhere",
  });
  await letter("workers_x", "limit-1", {
    "x-dlq-reason": "delivery_limit",
    "x-dlq-error-type": "DeliveryLimit",
    "x-dlq-error-message": "died each time",
    "x-dlq-deliveries": 5,
    "x-dlq-sender": "dispatcher",
    "x-dlq-allowed-senders": "admin,dispatcher,operator,workers_x",
  });
  await letter("intruder", "forged-1", {
    "x-dlq-reason": "exhausted",
    "x-dlq-sender": "dispatcher",
  });
  await hub.connect("dispatcher").publish("queue_t", {
    body: new TextEncoder().encode("{}"),
    properties: { messageId: "expired-1" },
  });
  while ((await admin.inspectQueue("queue_x.dlq"))?.messages !== 4) {
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  return admin;
}

Deno.test("deno task dlq lists every letter's reason, its own or the broker's, with deliveries", async () => {
  const hub = new MemoryBroker();
  try {
    await setup(hub);
    await withTempDir(async (dir) => {
      await Deno.writeTextFile(`${dir}/c.yml`, CONFIG);
      const { code, out } = await run(
        ["--config", `${dir}/c.yml`],
        () => Promise.resolve(hub.connect("operator")),
      );
      assert.equal(code, 0, out);
      assert.match(out, /^queue_x\.dlq: 4 dead letters$/m);
      assert.match(out, /#1 exhausted SimulatedFailure: failed \(attempts: 3\)/);
      assert.match(out, /#2 delivery_limit DeliveryLimit: died each time \(deliveries: 5\)/);
      assert.match(out, /#4 expired Broker: /);
    });
  } finally {
    await hub.shutdown();
  }
});

Deno.test("deno task dlq --replay sends back only proven letters, to their own queue, as operator", async () => {
  const hub = new MemoryBroker();
  const urls: string[] = [];
  try {
    const admin = await setup(hub);
    await withTempDir(async (dir) => {
      await Deno.writeTextFile(`${dir}/c.yml`, CONFIG);
      await admin.declareQueue("queue_elsewhere");
      // The compose stack's operator password: the tool's default user.
      await Deno.writeTextFile(`${dir}/operator.password`, "op-pw\n");
      const { code, out } = await run(["--config", `${dir}/c.yml`, "--replay"], (url) => {
        urls.push(url);
        return Promise.resolve(hub.connect("operator"));
      }, { SECRETS_DIR: dir });
      assert.deepEqual(urls, ["amqp://operator:op-pw@localhost:5672"]);
      assert.match(out, /^Broker: amqp:\/\/operator:\*\*\*@localhost:5672$/m);
      assert.equal(code, 1, "a refused letter asks for attention");
      assert.match(out, /^queue_x\.dlq: replayed 3 of 4 to queue_x$/m);
      assert.match(out, /^queue_x\.dlq: 1 left as they do not prove their origin:$/m);
      assert.match(out, /refused task forged-1 \(exhausted\): .*user_id is 'intruder'/);
      assert.equal((await admin.inspectQueue("queue_x"))?.messages, 3);
      assert.equal((await admin.inspectQueue("queue_elsewhere"))?.messages, 0);
      assert.equal((await admin.inspectQueue("queue_x.dlq"))?.messages, 1);
    });
  } finally {
    await hub.shutdown();
  }
});

Deno.test("deno task dlq refuses bad flags with exit code 2", async () => {
  const never = () => Promise.reject(new Error("must not connect"));
  for (
    const args of [
      ["--function", "a", "--queue", "b"],
      ["--reason", "bored"],
      ["--queue", "queue_x.dlq"],
      ["--limit", "0"],
      ["--config", "/nonexistent.yml"],
    ]
  ) {
    const { code, err } = await run(args, never);
    assert.equal(code, 2, args.join(" "));
    assert.match(err, /^Cannot /, args.join(" "));
  }
  const { out } = await run(["--help"], never);
  for (const reason of ["unauthenticated", "expired", "delivery_limit"]) {
    assert.ok(out.includes(reason), reason);
  }
});

Deno.test("deno task dlq prints a forged letter's control characters and escape sequences escaped", async () => {
  const hub = new MemoryBroker();
  try {
    const admin = hub.connect("admin");
    await admin.declareQueue("queue_x.dlq");
    const junk = "\u0001".repeat(100_000);
    const sequences = "\u001b]0;PWNED\u0007\u001b[2J\u001b[HAll clear: 0 dead letters\u001b[8m" +
      "\u009b2J\u001b]52;c;Y3VybCBldmlsIHwgc2g=\u0007";
    await hub.connect("dispatcher").publish("queue_x.dlq", {
      body: new TextEncoder().encode(`{"payload":"${sequences.replaceAll("\u001b", "\\u001b")}"}`),
      properties: {
        messageId: `forged\u001b[2J`,
        headers: {
          "x-dlq-reason": `rejected${sequences}`,
          "x-dlq-error-type": junk,
          "x-dlq-error-message": sequences + junk,
          "x-dlq-worker": junk,
          "x-dlq-at": sequences,
        },
      },
    });
    await withTempDir(async (dir) => {
      await Deno.writeTextFile(`${dir}/c.yml`, CONFIG);
      const connect = () => Promise.resolve(hub.connect("operator"));
      const text = await run(["--config", `${dir}/c.yml`], connect);
      assert.equal(text.code, 0, text.err);
      const json = await run(["--config", `${dir}/c.yml`, "--json"], connect);
      assert.equal(json.code, 0, json.err);
      for (const { out } of [text, json]) {
        // deno-lint-ignore no-control-regex
        assert.doesNotMatch(out, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/, "no raw control");
        assert.ok(!out.includes("\u001b"), "no ESC byte");
        assert.ok(out.length < 20_000, `bounded: ${out.length} characters`);
      }
      assert.match(text.out, /#1 rejected\.\.\. \(53 more characters\) /, "reason cut at 32");
      assert.match(text.out, /: \\u001b\]0;PWNED\\u0007\\u001b\[2J\\u001b\[HAll clear/);
      assert.match(text.out, /task forged\\u001b\[2J/);
      const letter = JSON.parse(json.out).queues[0].letters[0];
      assert.ok(letter.errorMessage.startsWith(sequences), "JSON keeps the text, escaped");
    });
  } finally {
    await hub.shutdown();
  }
});
