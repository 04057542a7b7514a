/**
 * The function sandbox, with a fixture function that tries to escape it:
 * real Web Workers with no permissions, in this process (`thread`), and in
 * a process of their own (`process`), as the embedded mode runs them. This
 * test process may read every file (`deno test -A`): the posture of the
 * tools that run embedded, in which only `process` keeps literal imports
 * from reading what the tool may.
 */

import assert from "node:assert/strict";
import { MemoryBroker } from "../../core/broker/mod.ts";
import { encodeRequest, parseReply, type TaskReply } from "../../core/contract/mod.ts";
import { createLogger, type Logger } from "../../core/log.ts";
import { CANARY_SECRET, writeCanary } from "../../tests/fixtures/canary.ts";
import { MAX_OUTPUT_LINE_CHARS, OUTPUT_LIMITS } from "./output_budget.ts";
import type { HandlerOutcome } from "../attempt.ts";
import { type Sandbox, SandboxError, type SandboxIsolation, startSandbox } from "./sandbox.ts";
import { startWorker } from "../worker/consumer.ts";
import { waitFor } from "../../tests/_helpers.ts";

const FIXTURES = new URL("../../tests/fixtures/", import.meta.url);
const escape = new URL("functions/escape.ts", FIXTURES);

type Line = Record<string, unknown>;

function recorder(): { log: Logger; lines: Line[] } {
  const lines: Line[] = [];
  return {
    log: createLogger({ level: "debug", write: (line) => lines.push(JSON.parse(line)) }),
    lines,
  };
}

let nextId = 1;
/** Runs one attempt; its log lines carry `task_id` `t<its run id>`. */
function attempt(
  sandbox: Sandbox,
  payload: Record<string, unknown>,
  log: Logger,
  limitMs = 2000,
): Promise<HandlerOutcome> {
  const id = nextId++;
  return sandbox.run(
    { id, payload, taskId: `t${id}`, attempt: 1, worker: "w", deadline: null },
    { ms: limitMs, type: "TaskTimeout", message: "timed out" },
    () => log.child({ function: "escape", task_id: `t${id}`, attempt: 1 }),
  );
}

async function withSandbox(
  fn: (sandbox: Sandbox, log: Logger, lines: Line[]) => Promise<void>,
  isolation: SandboxIsolation = "thread",
) {
  const { log, lines } = recorder();
  const sandbox = await startSandbox({
    module: escape,
    log: log.child({ function: "escape" }),
    stuckAfterMs: 300,
    isolation,
  });
  try {
    await fn(sandbox, log, lines);
  } finally {
    await sandbox.close();
  }
}

/** The imports of the escape fixture that reach outside tests/fixtures/functions/. */
const OUTSIDE_IMPORTS = [
  "text /etc/passwd",
  "text canary",
  "json canary",
  "json ../../../deno.json",
  "text ../../../test-config.yml",
  "code ../../_helpers.ts",
];

Deno.test("startSandbox() loads a function and reports what it says of itself", async () => {
  await withSandbox(async (sandbox, log) => {
    assert.equal(sandbox.info.name, "escape");
    assert.equal(sandbox.info.queue, "queue_escape");
    assert.equal(sandbox.info.timeoutMs, 2000);
    assert.equal(sandbox.info.retry.maxRetries, 0);
    assert.deepEqual(await attempt(sandbox, {}, log), { ok: true, resultJson: '"served"' });
  });
});

for (const isolation of ["thread", "process"] as const) {
  Deno.test(`a function's top-level code and handler can reach no file, variable or network (${isolation})`, async () => {
    await withSandbox(async (sandbox, log) => {
      const top = await attempt(sandbox, { attempt: "top-level" }, log);
      assert.ok(top.ok);
      const reached = JSON.parse(top.resultJson) as Record<string, string>;
      for (const [what, outcome] of Object.entries(reached)) {
        assert.equal(outcome, "NotCapable", what);
      }
      const cases: [string, string][] = [
        ["read", "/etc/hostname"],
        ["write", "/tmp/escaped"],
        ["run", "deno"],
        ["env", "HOME"],
        ["connect", "127.0.0.1:5672"],
        ["amqp", "amqp://guest:guest@127.0.0.1:5672"],
      ];
      for (const [what, target] of cases) {
        const outcome = await attempt(sandbox, { attempt: what, target }, log);
        assert.equal(outcome.ok, false, what);
        if (outcome.ok) continue;
        assert.equal(outcome.error.type, "NotCapable", `${what}: ${outcome.error.message}`);
        assert.equal(outcome.retryable, false, "a retry cannot grant a permission");
      }
    }, isolation);
  });
}

Deno.test("a sandbox in a process of its own refuses every import of a file outside the function's folder, though this process may read them all", async () => {
  await writeCanary();
  await withSandbox(async (sandbox, log) => {
    for (const target of OUTSIDE_IMPORTS) {
      const outcome = await attempt(sandbox, { attempt: "import", target }, log);
      assert.equal(outcome.ok, false, `${target} was read: ${JSON.stringify(outcome)}`);
      if (outcome.ok) continue;
      assert.match(outcome.error.message, /^Requires read access to /, target);
      assert.ok(!outcome.error.message.includes(CANARY_SECRET));
      assert.equal(outcome.retryable, false, "a retry cannot grant a permission");
    }
    // The same, as the module loaded.
    const top = await attempt(sandbox, { attempt: "top-level-imports" }, log);
    assert.ok(top.ok);
    const reached = JSON.parse(top.resultJson) as Record<string, string>;
    for (const target of OUTSIDE_IMPORTS) {
      assert.match(reached[target], /^TypeError: Requires read access to /, target);
    }
    assert.ok(!top.resultJson.includes(CANARY_SECRET));
    // Its own folder stays readable: the fixture loaded from it.
    assert.deepEqual(await attempt(sandbox, {}, log), { ok: true, resultJson: '"served"' });
  }, "process");
});

/** The lines the function wrote to its console, as the runtime logged them. */
function outputLines(lines: Line[]): Line[] {
  return lines.filter((line) => line.msg === "Function output");
}

for (const isolation of ["thread", "process"] as const) {
  Deno.test(`what a function writes to its console, Deno.stdout and Deno.stderr becomes log lines of its task, cut to a bound (${isolation})`, async () => {
    await withSandbox(async (sandbox, log, lines) => {
      for (const target of ["every-console", "deno-stdout", "forge", "forge-multiline", "huge"]) {
        assert.deepEqual(
          await attempt(sandbox, { attempt: "print", target }, log),
          { ok: true, resultJson: '"printed"' },
        );
      }
      // What its module printed as it loaded, logged as the function's, of no task.
      const loaded = outputLines(lines).find((line) => line.text === "escape fixture loaded");
      assert.ok(loaded, "the line printed at load");
      assert.equal(loaded.task_id, undefined);
      assert.equal(loaded.function, "escape");
      const output = outputLines(lines).filter((line) => line !== loaded);
      const texts = output.map((line) => String(line.text));
      for (
        const expected of [
          "console.log called",
          "console.info called",
          "console.debug called",
          "console.warn called",
          "console.error called",
          "Trace: console.trace called",
          "Assertion failed: console.assert called",
          "console.count: 1",
          "console.group",
          "Deno.stdout.writeSync called",
          "Deno.stderr.writeSync called",
        ]
      ) {
        assert.ok(texts.some((text) => text.startsWith(expected)), `${expected} in ${texts}`);
      }
      for (const line of output) {
        assert.equal(line.source, "function");
        assert.equal(line.function, "escape");
        assert.match(String(line.task_id), /^t\d+$/, "attributed to its task");
        assert.ok(String(line.text).length <= MAX_OUTPUT_LINE_CHARS);
        assert.equal(line.level, line.stream === "stderr" ? "warn" : "info");
      }
      // The forged line is the value of a field, never a line of its own.
      assert.ok(!lines.some((line) => line.msg === "Task succeeded" || line.msg === "Forged"));
      assert.ok(texts.some((text) => text.includes('"msg":"Task succeeded"')));
      const huge = texts.find((text) => text.startsWith("xxxx"))!;
      assert.equal(huge.length, MAX_OUTPUT_LINE_CHARS);
      assert.match(huge, /\.\.\. \(\d+ more characters\)$/);
    }, isolation);
  });
}

Deno.test("what a function writes to file descriptor 1 by itself comes out of its own process as its output (process)", async () => {
  await withSandbox(async (sandbox, log, lines) => {
    await attempt(sandbox, { attempt: "print", target: "node-fd" }, log);
    await waitFor(
      () => outputLines(lines).some((line) => String(line.text).includes("Forged through fd 1")),
      "the line written to fd 1",
    );
    const line = outputLines(lines).find((l) => String(l.text).includes("Forged through fd 1"))!;
    assert.equal(line.source, "function");
    assert.equal(line.function, "escape");
    assert.ok(!lines.some((l) => l.msg === "Forged through fd 1"));
  }, "process");
});

Deno.test("a function flooding its console for a second gets its budget, the rest is counted once per window, and it goes on serving", async () => {
  await withSandbox(async (sandbox, log, lines) => {
    const flood = await attempt(sandbox, { attempt: "print", target: "flood" }, log, 5000);
    assert.deepEqual(flood, { ok: true, resultJson: '"printed"' });
    await waitFor(
      () => lines.some((line) => line.dropped_lines !== undefined),
      "the report of what was dropped",
    );
    const kept = outputLines(lines);
    const chars = kept.reduce((sum, line) => sum + String(line.text).length, 0);
    const reports = lines.filter((line) => line.dropped_lines !== undefined);
    console.log(
      `flood: ${kept.length} lines (${chars} characters) kept, reports: ${
        reports.map((r) => r.dropped_lines).join(", ")
      } lines dropped`,
    );
    // The flood lasted a second, so at most two windows' worth came through.
    assert.ok(chars <= 2 * OUTPUT_LIMITS.chars, `${chars} characters kept`);
    assert.ok(kept.length >= 1, "the budget lets lines through");
    const dropped = reports.reduce((sum, report) => sum + Number(report.dropped_lines), 0);
    assert.ok(dropped > 0);
    for (const report of reports) {
      assert.equal(report.level, "warn");
      assert.equal(report.function, "escape");
      assert.ok(Number(report.dropped_chars) > 0);
    }
    assert.deepEqual(await attempt(sandbox, {}, log), { ok: true, resultJson: '"served"' });
  });
});

Deno.test("a function's own log fields cannot replace the fields the runtime puts on its lines", async () => {
  await withSandbox(async (sandbox, log, lines) => {
    await attempt(sandbox, { attempt: "print", target: "log-fields" }, log);
    const line = lines.find((l) => l.msg === "Function log line")!;
    assert.equal(line.function, "escape");
    assert.match(String(line.task_id), /^t\d+$/);
    assert.equal(line.source, "function");
    assert.equal(line.fn_function, "forged");
    assert.equal(line.fn_task_id, "forged");
    assert.equal(line.fn_queue, "forged");
    assert.equal(line.fn_worker, "forged");
    assert.equal(line.mine, "kept");
  });
});

Deno.test("a function cannot end its sandbox: Deno.exit() and close() are refused", async () => {
  await withSandbox(async (sandbox, log) => {
    for (const what of ["exit", "close"]) {
      const outcome = await attempt(sandbox, { attempt: what }, log);
      assert.equal(outcome.ok, false);
      if (!outcome.ok) assert.match(outcome.error.message, /not allowed in a function's sandbox/);
    }
    assert.deepEqual(await attempt(sandbox, {}, log), { ok: true, resultJson: '"served"' });
  });
});

Deno.test("a stray error of a handler is logged and the sandbox goes on serving", async () => {
  await withSandbox(async (sandbox, log, lines) => {
    assert.ok((await attempt(sandbox, { attempt: "stray" }, log)).ok);
    const deadline = Date.now() + 2000;
    while (!lines.some((l) => (l as { msg: string }).msg.includes("unhandled"))) {
      if (Date.now() > deadline) throw new Error("no log line for the stray error");
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.deepEqual(await attempt(sandbox, {}, log), { ok: true, resultJson: '"served"' });
  });
});

Deno.test("a handler that never yields times out, its sandbox starts again, and serves the next task", async () => {
  await withSandbox(async (sandbox, log, lines) => {
    const started = Date.now();
    const outcome = await attempt(sandbox, { attempt: "spin", target: "60000" }, log, 200);
    assert.deepEqual(outcome, {
      ok: false,
      retryable: true,
      error: { type: "TaskTimeout", message: "timed out" },
    });
    // Half the spin's 60 s: far above the 200 ms limit however loaded the machine, and
    // far below the work it would have finished without it.
    assert.ok(Date.now() - started < 30_000, "ended at the limit, not after the work");
    const next = await attempt(sandbox, {}, log);
    assert.deepEqual(next, { ok: true, resultJson: '"served"' });
    assert.ok(
      lines.some((l) => String((l as { msg: string }).msg).includes("starting it again")),
      "the restart was logged",
    );
  });
});

Deno.test("a task that waits for its sandbox to start again gets its whole time limit after", async () => {
  await withSandbox(async (sandbox, log) => {
    const spin = await attempt(sandbox, { attempt: "spin", target: "60000" }, log, 100);
    assert.equal(spin.ok, false);
    // Sent once the sandbox is suspect: it waits (stuckAfterMs 300, then a
    // new sandbox loads) far longer than its own 50 ms limit, which starts
    // only once a sandbox takes it.
    const waited = Date.now();
    assert.deepEqual(await attempt(sandbox, {}, log, 50), { ok: true, resultJson: '"served"' });
    assert.ok(Date.now() - waited >= 300, "it did wait for the new sandbox");
  });
});

Deno.test("a hung handler's sandbox is ended a second after its limit, and the other task it ran goes back to the queue without using an attempt", async () => {
  const hub = new MemoryBroker();
  const { log, lines } = recorder();
  // The default stuckAfterMs: a second.
  const sandbox = await startSandbox({ module: escape, log });
  const worker = await startWorker(sandbox, hub.connect("escape"), {
    workerId: "escape@test",
    concurrency: 2,
    // Were the task beside the hung one counted, its next delivery would be its last.
    deliveryLimit: 1,
    log,
  });
  const client = hub.connect("dispatcher");
  const replies = new Map<string, TaskReply & { at: number }>();
  const replyTo = await client.openReplyQueue((message) => {
    const parsed = parseReply(message.body);
    assert.ok(parsed.ok);
    replies.set(parsed.value.task_id!, { ...parsed.value, at: Date.now() });
  });
  const send = (taskId: string, payload: Record<string, unknown>, deadline?: number) =>
    client.publish("queue_escape", encodeRequest("escape", payload, { taskId, replyTo, deadline }));
  try {
    // Started first: it waits in the sandbox while the next one holds it.
    // Its own limit (the fixture's timeoutMs, 2 s) comes after the restart
    // (a second after the hung task's 300 ms), its wait of 1.9 s too.
    await send("slow", { attempt: "wait", target: "1900" });
    await waitFor(() => worker.stats.inFlight === 1, "the slow task started");
    // Never yields; the caller's deadline ends its attempt at 300 ms.
    await send("hung", { attempt: "spin", target: "60000" }, Date.now() + 300);
    await waitFor(() => replies.has("slow"), "the slow task's reply", 15_000);
    const hung = replies.get("hung")!;
    assert.equal(hung.error?.type, "DeadlineExceeded");
    const slow = replies.get("slow")!;
    assert.equal(slow.status, "success", JSON.stringify(slow));
    assert.equal(slow.result, "waited");
    assert.equal(slow.attempts, 1, "returned to the queue, not retried");
    const restart = lines.find((line) => String(line.msg).includes("did not answer"));
    assert.ok(restart, "the stuck sandbox was ended");
    const returned = lines.find((line) =>
      line.msg === "Returning a task to the queue" && line.task_id === "slow"
    );
    assert.match(String(returned?.error), /its sandbox was stuck in another task's handler/);
    assert.equal(worker.stats.handedBack, 1, "handed back as a copy");
    assert.equal(worker.stats.sandboxFailed, 0, "not as a failed delivery");
    // Ended no sooner than a second after the limit.
    assert.ok(Date.parse(String(restart.ts)) - hung.at >= 990, "ended a second after the limit");
  } finally {
    await worker.stop(0);
    await sandbox.close();
    await client.close();
    await hub.shutdown();
  }
});

Deno.test("a handler that crashes its sandbox ends as a failed delivery, and its sandbox starts again and serves", async () => {
  await withSandbox(async (sandbox, log, lines) => {
    const outcome = await attempt(sandbox, { attempt: "crash" }, log);
    assert.equal(outcome.ok, false);
    if (!outcome.ok) {
      assert.equal(outcome.requeue, "failed_delivery");
      assert.match(outcome.error.message, /its sandbox failed: .*crashed its sandbox/);
    }
    assert.ok(
      lines.some((line) => line.msg === "The function's sandbox failed; starting it again"),
    );
    assert.deepEqual(await attempt(sandbox, {}, log), { ok: true, resultJson: '"served"' });
  });
});

for (const isolation of ["thread", "process"] as const) {
  Deno.test(`a task that crashes its sandbox every time is dead-lettered at the delivery limit, not run for ever (${isolation})`, async () => {
    const hub = new MemoryBroker();
    const { log, lines } = recorder();
    const sandbox = await startSandbox({ module: escape, log, isolation });
    const worker = await startWorker(sandbox, hub.connect("escape"), {
      workerId: "escape@test",
      deliveryLimit: 2,
      log,
    });
    const client = hub.connect("dispatcher");
    const replies = new Map<string, TaskReply>();
    const replyTo = await client.openReplyQueue((message) => {
      const parsed = parseReply(message.body);
      assert.ok(parsed.ok);
      replies.set(parsed.value.task_id!, parsed.value);
    });
    const send = (taskId: string, payload: Record<string, unknown>) =>
      client.publish("queue_escape", encodeRequest("escape", payload, { taskId, replyTo }));
    try {
      await send("crash", { attempt: "crash" });
      await waitFor(() => replies.has("crash"), "the crashing task's reply", 60_000);
      assert.equal(replies.get("crash")!.error?.type, "DeliveryLimit");
      const crashes = lines.filter((line) =>
        line.msg === "The function's sandbox failed; starting it again"
      );
      assert.equal(crashes.length, 2, "it ran, and crashed its sandbox, once per delivery allowed");
      const returned = lines.filter((line) =>
        line.msg === "Returning a task to the queue as a failed delivery" &&
        line.task_id === "crash"
      );
      assert.equal(returned.length, 2);
      assert.equal(worker.stats.sandboxFailed, 2);
      assert.equal(worker.stats.handedBack, 0);
      await send("after", {});
      await waitFor(() => replies.has("after"), "the next task's reply", 30_000);
      assert.equal(replies.get("after")!.result, "served");
    } finally {
      await worker.stop(0);
      await sandbox.close();
      await client.close();
      await hub.shutdown();
    }
  });
}

for (const isolation of ["thread", "process"] as const) {
  Deno.test(`close() aborts a running handler and lets it end: its signal fires and its last line is logged (${isolation})`, async () => {
    const { log, lines } = recorder();
    const sandbox = await startSandbox({ module: escape, log, isolation });
    const running = attempt(sandbox, { attempt: "wait", target: "60000" }, log, 60_000);
    // Started once the sandbox has it: a line written by that task.
    await attempt(sandbox, { attempt: "print", target: "deno-stdout" }, log);
    await sandbox.close();
    const outcome = await running;
    assert.equal(outcome.ok, false);
    const fired = lines.find((line) => line.msg === "The handler's signal fired");
    assert.ok(fired, JSON.stringify(lines));
    assert.equal(fired.reason, "The worker is stopping");
    assert.equal(fired.source, "function");
  });
}

Deno.test("startSandbox() names what is wrong with a module that cannot be served", async () => {
  const { log } = recorder();
  await assert.rejects(
    () => startSandbox({ module: new URL("broken/no_default.ts", FIXTURES), log }),
    (error: Error) =>
      error instanceof SandboxError &&
      /no default export made by defineFunction/.test(error.message),
  );
  await assert.rejects(
    () => startSandbox({ module: new URL("broken/throws_on_load.ts", FIXTURES), log }),
    (error: Error) =>
      error instanceof SandboxError && /this module fails as it loads/.test(error.message),
  );
});

Deno.test("without --unstable-worker-options nothing runs unsandboxed: Deno stops, naming the flag", async () => {
  const module = new URL("./sandbox.ts", import.meta.url).href;
  const code = `import { startSandbox } from ${JSON.stringify(module)};
    import { SILENT_LOGGER } from ${
    JSON.stringify(new URL("../../core/log.ts", import.meta.url).href)
  };
    await startSandbox({ module: new URL(${JSON.stringify(escape.href)}), log: SILENT_LOGGER });
    console.log("started unsandboxed");`;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-config", "--no-check", code],
    env: { NO_COLOR: "1" },
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  assert.notEqual(output.code, 0);
  assert.ok(!stdout.includes("started"), stdout);
  assert.match(stderr, /--unstable-worker-options/);
});
