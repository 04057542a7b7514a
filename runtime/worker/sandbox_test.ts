/**
 * The function sandbox, with a fixture function that tries to escape it:
 * real Web Workers with no permissions, in this process.
 */

import assert from "node:assert/strict";
import { createLogger, type Logger } from "../../core/log.ts";
import type { HandlerOutcome } from "./run_handler.ts";
import { type Sandbox, SandboxError, startSandbox } from "./sandbox.ts";

const FIXTURES = new URL("../../tests/fixtures/", import.meta.url);
const escape = new URL("functions/escape.ts", FIXTURES);

function recorder(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { log: createLogger({ write: (line) => lines.push(JSON.parse(line)) }), lines };
}

let nextId = 1;
function attempt(
  sandbox: Sandbox,
  payload: Record<string, unknown>,
  log: Logger,
  limitMs = 2000,
): Promise<HandlerOutcome> {
  return sandbox.run(
    { id: nextId++, payload, taskId: "t", attempt: 1, worker: "w", deadline: null },
    { ms: limitMs, type: "TaskTimeout", message: "timed out" },
    () => log,
  );
}

async function withSandbox(fn: (sandbox: Sandbox, log: Logger, lines: unknown[]) => Promise<void>) {
  const { log, lines } = recorder();
  const sandbox = await startSandbox({ module: escape, log, stuckAfterMs: 300 });
  try {
    await fn(sandbox, log, lines);
  } finally {
    await sandbox.close();
  }
}

Deno.test("startSandbox() loads a function and reports what it says of itself", async () => {
  await withSandbox(async (sandbox, log) => {
    assert.equal(sandbox.info.name, "escape");
    assert.equal(sandbox.info.queue, "queue_escape");
    assert.equal(sandbox.info.timeoutMs, 2000);
    assert.equal(sandbox.info.retry.maxRetries, 0);
    assert.deepEqual(await attempt(sandbox, {}, log), { ok: true, resultJson: '"served"' });
  });
});

Deno.test("a function's top-level code and handler can reach no file, variable or network", async () => {
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
