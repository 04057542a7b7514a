import assert from "node:assert/strict";
import { withTempDir } from "../tests/_temp_dir.ts";
import { ConfigError } from "../core/config_error.ts";
import { connect } from "./connect.ts";

Deno.test("connect({ local: true }) calls task_a and task_b of test-config.yml in this process", async () => {
  const client = await connect({ local: true });
  try {
    assert.match(client.broker, /^embedded/);
    assert.deepEqual([...client.functions.keys()], ["task_a", "task_b"]);
    const [a, b] = await Promise.all([
      client.call<string>("task_a", { work_ms: 0 }),
      client.call<string>("task_b", { work_ms: 0 }),
    ]);
    assert.equal(a, "Hello from Task A");
    assert.equal(b, "Hello from Task B");
    assert.equal(client.ignored.unexpectedSender, 0, "the embedded workers answer as themselves");
  } finally {
    await client.close();
  }
});

Deno.test("connect() takes the functions option over any configuration file", async () => {
  const client = await connect({
    local: true,
    functions: { task_a: "queue_a", task_b: { queue: "queue_b", user: "task_b" } },
    config: "/nonexistent.yml",
  });
  try {
    assert.deepEqual(client.functions.get("task_a"), { queue: "queue_a", user: "task_a" });
  } finally {
    await client.close();
  }
});

Deno.test("connect() refuses settings it cannot use with a ConfigError, before connecting", async () => {
  await assert.rejects(connect({ config: "/nonexistent/test-config.yml" }), ConfigError);
  await assert.rejects(
    connect({ functions: { task_a: "Queue A" } }),
    (error: Error) => error instanceof ConfigError && /queue 'Queue A'/.test(error.message),
  );
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/url`, "amqp://u:p@localhost:1");
    await assert.rejects(
      connect({ url: "amqp://u:secret@localhost:1", passwordFile: `${dir}/url`, functions: {} }),
      (error: Error) =>
        error instanceof ConfigError && /^Cannot use passwordFile as/.test(error.message) &&
        !error.message.includes("secret"),
    );
  });
});
