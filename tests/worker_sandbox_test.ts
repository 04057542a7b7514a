/**
 * The sandbox of a host worker (`deno task worker`'s permissions, with the
 * escape fixture's folder instead of functions/) on the RabbitMQ at
 * `AMQP_URL`: what its function may not import, what the worker gives up
 * before loading it, what reaches the worker's stdout, and its handler's
 * signal on a stop. Also the worker's refusal of a blanket --allow-read,
 * which needs no broker.
 */

import assert from "node:assert/strict";
import { followLines, LineWatch } from "../bench/processes.ts";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { encodeRequest, parseReply, type TaskReply } from "../core/contract/mod.ts";
import { MAX_OUTPUT_LINE_CHARS, OUTPUT_LIMITS } from "../runtime/sandbox/output_budget.ts";
import { CANARY_SECRET, writeCanary } from "./fixtures/canary.ts";
import { AMQP_URL, NEEDS_RABBITMQ } from "./_infra.ts";
import { deleteFunctionQueues, uniqueName, waitFor } from "./_helpers.ts";

const ROOT = new URL("../", import.meta.url);
const FIXTURE = "tests/fixtures/functions/escape.ts";

/** `deno task worker`'s flags, reading the fixture's folder instead of functions/. */
function workerArgs(read: string, extraReads: string[] = []): string[] {
  return [
    "run",
    "--no-prompt",
    "--unstable-worker-options",
    "--allow-net",
    "--allow-env",
    read ||
    `--allow-read=${["runtime", "core", "tests/fixtures/functions", ...extraReads].join(",")}`,
    "--allow-sys=hostname",
    "runtime/process/main.ts",
    FIXTURE,
  ];
}

/** A worker process whose stdout and stderr are kept apart, each line by line. */
function startWorker(args: string[], env: Record<string, string>) {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", METRICS_PORT: "0", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout: string[] = [];
  const stderr: string[] = [];
  const watch = new LineWatch(stdout);
  let exited = false;
  const done = Promise.all([
    followLines(child.stdout, stdout, watch.notify),
    followLines(child.stderr, stderr, () => {}),
  ]);
  const status = child.status.then((status) => {
    exited = true;
    watch.notify();
    return status;
  });
  return {
    child,
    stdout,
    stderr,
    waitForLine: (pattern: RegExp, timeoutMs = 30_000) =>
      watch.waitFor(
        pattern,
        timeoutMs,
        (why) => `No line matching ${pattern} (${why}):\n${[...stdout, ...stderr].join("\n")}`,
        () => exited,
      ),
    /** Signals the worker and resolves with its exit code; kills it if it outlives `timeoutMs`. */
    async stop(signal: Deno.Signal = "SIGTERM", timeoutMs = 15_000): Promise<number> {
      if (!exited) child.kill(signal);
      const timer = setTimeout(() => !exited && child.kill("SIGKILL"), timeoutMs);
      try {
        const { code } = await status;
        await done;
        return code;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

Deno.test("deno task worker refuses to start when it may read every file, naming the flag and the fix", async () => {
  const output = await new Deno.Command(Deno.execPath(), {
    args: workerArgs("--allow-read"),
    cwd: ROOT,
    env: { NO_COLOR: "1", AMQP_URL: "amqp://guest:guest@127.0.0.1:1" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 2, stderr);
  assert.match(
    stderr,
    /Cannot start a worker that may read every file \(--allow-read without paths\)/,
  );
  assert.match(stderr, /grant --allow-read=functions,runtime,core and each secret file by path/);
  assert.equal(new TextDecoder().decode(output.stdout), "", "it loaded no function");
});

/** A caller on the broker, with its replies by task id. */
async function caller(queue: string) {
  const broker = await connectAmqp(AMQP_URL, { connectionName: "worker-sandbox-test" });
  const replies = new Map<string, TaskReply>();
  const replyTo = await broker.openReplyQueue((message) => {
    const parsed = parseReply(message.body);
    assert.ok(parsed.ok, "every reply follows the contract");
    replies.set(parsed.value.task_id ?? "", parsed.value);
  });
  return {
    async call(payload: Record<string, unknown>, timeoutMs = 20_000): Promise<TaskReply> {
      const taskId = crypto.randomUUID();
      // Retries allowed (the fixture has none of its own): a denial must not use them.
      const retry = { max_retries: 2, base_delay_ms: 1 };
      await broker.publish(queue, encodeRequest("escape", payload, { taskId, replyTo, retry }));
      await waitFor(
        () => replies.has(taskId),
        `the reply to ${JSON.stringify(payload)}`,
        timeoutMs,
      );
      return replies.get(taskId)!;
    },
    send(taskId: string, payload: Record<string, unknown>) {
      return broker.publish(queue, encodeRequest("escape", payload, { taskId, replyTo }));
    },
    async close() {
      await deleteFunctionQueues(broker, queue);
      await broker.close();
    },
  };
}

/** The worker's stdout lines, parsed: each must be one JSON object. */
function parsed(lines: string[]): Record<string, unknown>[] {
  return lines.filter((line) => line.trim() !== "").map((line) => {
    try {
      return JSON.parse(line);
    } catch {
      throw new Error(`A stdout line of the worker is not one of its log lines: ${line}`);
    }
  });
}

Deno.test({
  name:
    "a host worker gives up its secrets before loading the function, which imports nothing outside its folder, and whose output reaches stdout only as the worker's attributed, bounded lines",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    await writeCanary();
    const queue = uniqueName("worker_sandbox");
    const url = new URL(AMQP_URL);
    const dir = await Deno.makeTempDir({ prefix: "worker-sandbox-" });
    const passwordFile = `${dir}/amqp_password`;
    await Deno.writeTextFile(passwordFile, decodeURIComponent(url.password), { mode: 0o600 });
    url.password = "";
    const worker = startWorker(workerArgs("", [passwordFile]), {
      AMQP_URL: url.href,
      AMQP_PASSWORD_FILE: passwordFile,
      QUEUE: queue,
      LOG_LEVEL: "debug",
      SHUTDOWN_GRACE_MS: "300",
    });
    const c = await caller(queue);
    try {
      await worker.waitForLine(/"msg":"Consuming"/);

      // Audit row 63: what it gave up, as Deno reports it once it did.
      const gaveUp = parsed(worker.stdout).find((line) =>
        line.msg === "Gave up the start-up permissions before loading the function"
      );
      assert.ok(gaveUp, worker.stdout.join("\n"));
      const given = String(gaveUp.given_up).split(", ");
      for (const what of ["env", "sys", "run", "ffi", "write", `read ${passwordFile}`]) {
        assert.ok(given.includes(what), `${what} given up: ${gaveUp.given_up}`);
      }
      assert.equal(gaveUp.still_held, undefined, "nothing kept");
      const loaded = worker.stdout.findIndex((line) => line.includes('"msg":"Consuming"'));
      assert.ok(worker.stdout.indexOf(JSON.stringify(gaveUp)) < loaded, "given up first");

      // F1: the worker may read only the fixture's folder and the runtime.
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
        const reply = await c.call({ attempt: "import", target });
        assert.equal(reply.status, "error", `${target}: ${JSON.stringify(reply.result)}`);
        assert.match(reply.error!.message, /^Requires read access to /, target);
        assert.equal(reply.attempts, 1, "a denial is not retried");
      }
      const top = await c.call({ attempt: "top-level-imports" });
      assert.ok(!JSON.stringify(top.result).includes(CANARY_SECRET));
      const read = await c.call({ attempt: "read", target: passwordFile });
      assert.equal(read.error?.type, "NotCapable");

      // F5: a forged line, a 1 MiB line, every console method, Deno.stdout, a
      // second of flooding, and fields that try to pass for another task's.
      for (const target of ["forge", "forge-multiline", "huge", "every-console", "deno-stdout"]) {
        assert.equal((await c.call({ attempt: "print", target })).result, "printed");
      }
      assert.equal((await c.call({ attempt: "print", target: "log-fields" })).result, "printed");
      assert.equal((await c.call({ attempt: "print", target: "flood" })).result, "printed");
      await worker.waitForLine(/"dropped_lines"/, 10_000);
      assert.equal((await c.call({})).result, "served", "the worker keeps serving");

      const lines = parsed(worker.stdout);
      assert.ok(
        !lines.some((line) => line.worker === "task_b@forged" || line.msg === "Forged"),
        "no forged line",
      );
      for (const line of lines) {
        assert.equal(line.function, "escape", JSON.stringify(line).slice(0, 200));
      }
      const output = lines.filter((line) =>
        line.msg === "Function output" && line.text !== "escape fixture loaded"
      );
      const loading = lines.find((line) => line.text === "escape fixture loaded");
      assert.equal(loading?.source, "function", "what the module printed as it loaded");
      for (const line of output) {
        assert.equal(line.source, "function");
        assert.equal(typeof line.task_id, "string", "attributed to its task");
        assert.equal(line.attempt, 1);
        assert.ok(String(line.text).length <= MAX_OUTPUT_LINE_CHARS);
      }
      const texts = output.map((line) => String(line.text));
      assert.ok(texts.some((text) => text.includes('"worker":"task_b@forged"')), "kept as text");
      assert.ok(texts.includes("Deno.stdout.writeSync called"));
      assert.ok(texts.includes("Deno.stderr.writeSync called"));
      assert.ok(texts.some((text) => text.startsWith("Trace: console.trace called")));
      assert.ok(texts.some((text) => text.length === MAX_OUTPUT_LINE_CHARS), "the 1 MiB line, cut");
      const flooded = texts.filter((text) => text.startsWith("yyyy"));
      const floodChars = flooded.reduce((sum, text) => sum + text.length, 0);
      assert.ok(floodChars <= 2 * OUTPUT_LIMITS.chars, `${floodChars} characters of the flood`);
      const longest = Math.max(...worker.stdout.map((line) => line.length));
      assert.ok(longest < MAX_OUTPUT_LINE_CHARS + 1024, `longest stdout line: ${longest}`);
      const own = lines.find((line) => line.msg === "Function log line")!;
      assert.equal(own.source, "function");
      assert.equal(own.fn_task_id, "forged");
      assert.notEqual(own.task_id, "forged");
      assert.equal(own.worker, lines.find((line) => line.msg === "Consuming")!.worker);
      console.log(
        `stdout: ${lines.length} lines, the longest ${longest} characters; the flood kept ${flooded.length} lines`,
      );

      // Audit row 6: a stop past the grace period fires the handler's signal.
      const stopped = crypto.randomUUID();
      await c.send(stopped, { attempt: "wait", target: "60000" });
      await worker.waitForLine(new RegExp(`"msg":"Task started".*"task_id":"${stopped}"`));
      assert.equal(await worker.stop("SIGTERM"), 0, worker.stderr.join("\n"));
      const fired = parsed(worker.stdout).find((line) =>
        line.msg === "The handler's signal fired" && line.task_id === stopped
      );
      assert.ok(fired, worker.stdout.slice(-10).join("\n"));
      assert.equal(fired.reason, "The worker is stopping and the grace period is over");
      assert.equal(fired.source, "function");
    } finally {
      await worker.stop("SIGKILL");
      await c.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
