/**
 * The embedded mode in this process, which may read every file (`deno test
 * -A`, as `deno task dispatch` may): each function runs in a sandbox
 * process of its own that may read only its folder and the runtime.
 */

import assert from "node:assert/strict";
import { encodeRequest, parseReply, type TaskReply } from "../core/contract/mod.ts";
import { CANARY_SECRET, writeCanary } from "../tests/fixtures/canary.ts";
import { waitFor } from "../tests/_helpers.ts";
import { startEmbedded } from "./embedded.ts";

const FIXTURE_FUNCTIONS = new URL("../tests/fixtures/functions/", import.meta.url);

async function withEscape(fn: (call: (payload: unknown) => Promise<TaskReply>) => Promise<void>) {
  const embedded = await startEmbedded([{ task: "escape", queue: "queue_escape" }], {
    functionsDir: FIXTURE_FUNCTIONS,
    logLevel: "error",
  });
  const client = embedded.connect();
  const replies = new Map<string, TaskReply>();
  try {
    const replyTo = await client.openReplyQueue((message) => {
      const parsed = parseReply(message.body);
      assert.ok(parsed.ok);
      replies.set(parsed.value.task_id!, parsed.value);
    });
    await fn(async (payload) => {
      const taskId = crypto.randomUUID();
      await client.publish(
        "queue_escape",
        // Retries allowed (the fixture has none of its own): a denial must not use them.
        encodeRequest("escape", payload as Record<string, unknown>, {
          taskId,
          replyTo,
          retry: { max_retries: 2, base_delay_ms: 1 },
        }),
      );
      await waitFor(() => replies.has(taskId), `the reply to ${JSON.stringify(payload)}`);
      return replies.get(taskId)!;
    });
  } finally {
    await client.close();
    await embedded.stop();
  }
}

Deno.test("startEmbedded() runs a function where it can reach no file, variable, network or program", async () => {
  await withEscape(async (call) => {
    for (
      const [attempt, target] of [
        ["read", "/etc/hostname"],
        ["read", "deno.json"],
        ["env", "HOME"],
        ["connect", "127.0.0.1:5672"],
        ["run", "deno"],
        ["write", "/tmp/escaped"],
      ]
    ) {
      const reply = await call({ attempt, target });
      assert.equal(reply.status, "error", `${attempt} ${target}`);
      assert.equal(reply.error?.type, "NotCapable", `${attempt} ${target}`);
      assert.equal(reply.attempts, 1, "a denial is not retried");
    }
    assert.equal((await call({})).result, "served");
  });
});

Deno.test("startEmbedded() refuses a function every import of a file outside its folder, though this process may read them", async () => {
  await writeCanary();
  await withEscape(async (call) => {
    for (
      const target of [
        "text /etc/passwd",
        "text canary",
        "json canary",
        "json ../../../deno.json",
        "text ../../../test-config.yml",
        "code ../../_helpers.ts",
      ]
    ) {
      const reply = await call({ attempt: "import", target });
      assert.equal(reply.status, "error", `${target}: ${JSON.stringify(reply.result)}`);
      assert.match(reply.error!.message, /^Requires read access to /);
      assert.equal(reply.attempts, 1, "a denial is not retried");
    }
    const top = await call({ attempt: "top-level-imports" });
    assert.ok(!JSON.stringify(top.result).includes(CANARY_SECRET));
    for (const outcome of Object.values(top.result as Record<string, string>)) {
      assert.match(outcome, /^TypeError: Requires read access to /);
    }
  });
});

Deno.test("a sandbox process ends when the process that started it dies", async () => {
  const script = `
    import { startEmbedded } from ${JSON.stringify(new URL("./embedded.ts", import.meta.url).href)};
    await startEmbedded([{ task: "escape", queue: "queue_escape" }], {
      functionsDir: new URL(${JSON.stringify(FIXTURE_FUNCTIONS.href)}),
    });
    console.log("started");
    await new Promise(() => {});
  `;
  const parent = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--allow-all", script],
    cwd: new URL("../", import.meta.url),
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = parent.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    const first = await Promise.race([
      reader.read(),
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error("the parent did not start within 30 s")), 30_000)
      ),
    ]);
    assert.match(String(first.value), /started/);
    const children = (await Deno.readTextFile(`/proc/${parent.pid}/task/${parent.pid}/children`))
      .trim().split(" ").filter(Boolean).map(Number);
    assert.equal(children.length, 1, "one sandbox process");
    parent.kill("SIGKILL");
    await parent.status;
    await waitFor(async () => !(await exists(`/proc/${children[0]}`)), "the child ended", 10_000);
  } finally {
    try {
      parent.kill("SIGKILL");
    } catch {
      // Ended.
    }
    await reader.cancel();
    await parent.status;
  }
});

async function exists(path: string): Promise<boolean> {
  try {
    const status = await Deno.readTextFile(`${path}/status`);
    // A zombie has ended; only its parent's wait removes it.
    return !/^State:\s+Z/m.test(status);
  } catch {
    return false;
  }
}
