/**
 * The compose stack's gateway, on the stand-in image's RabbitMQ 4.0.5, as
 * a user meets it: after `docker compose up -d --build`, README's curl
 * (with this stack's port and secrets folder) calls task_a through the
 * gateway's own broker user; an async call is followed and another
 * cancelled; the same Idempotency-Key twice runs task_a once; a key added
 * on the host is taken without a restart; an event is taken; a wrong key is refused; the container is confined, and signs
 * callbacks with the secret its set-up made.
 */

import assert from "node:assert/strict";
import { NEEDS_DOCKER } from "./_infra.ts";
import { freePort, waitFor } from "./_helpers.ts";
import { holdEngine } from "./_engine_lock.ts";
import { createStack, type Stack } from "./_compose.ts";
import { runCommand } from "./_command.ts";
import { runDeno } from "./_processes.ts";

/** README's quick-start curl line. */
async function readmeCurl(): Promise<string> {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const line = readme.split("\n").find((l) => l.startsWith("curl ") && l.includes("gateway.key"));
  assert.ok(line, "README.md has the gateway's curl");
  return line;
}

Deno.test({
  name:
    "compose stack: README's curl calls task_a through the gateway; async, cancel and events work as the gateway's broker user",
  ignore: NEEDS_DOCKER,
  async fn() {
    await using _engine = await holdEngine("shared");
    const port = freePort();
    let stack: Stack | undefined;
    try {
      stack = await createStack("gw", { env: { GATEWAY_PORT: String(port) } });
      await stack.compose(["up", "-d", "--build", "gateway", "worker-a", "worker-b"]);
      const base = `http://127.0.0.1:${port}`;
      await waitFor(
        async () => {
          try {
            const response = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(2_000) });
            await response.body?.cancel();
            return response.status === 200;
          } catch {
            return false;
          }
        },
        "the gateway to answer /healthz",
        180_000,
        500,
      );

      // README's line, with this stack's secrets folder and port.
      const line = (await readmeCurl())
        .replace("secrets/gateway.key", `${stack.secretsDir}/gateway.key`)
        .replace("127.0.0.1:8080", `127.0.0.1:${port}`);
      let answer = "";
      await waitFor(
        async () => {
          const run = await runCommand("bash", ["-c", `${line} -s`], {
            timeoutMs: 60_000,
            what: "curl",
          });
          answer = run.stdout;
          return answer.includes("Hello from Task A") || !answer.includes("no_workers");
        },
        "task_a's worker",
        120_000,
        1000,
      );
      assert.match(answer, /"result":"Hello from Task A"/);

      const key = (await Deno.readTextFile(`${stack.secretsDir}/gateway.key`)).trim();
      const auth = { authorization: `Bearer ${key}` };
      const call = async (path: string, init: RequestInit = {}) => {
        const response = await fetch(base + path, {
          ...init,
          headers: { ...auth, ...init.headers },
          signal: AbortSignal.timeout(60_000),
        });
        return { status: response.status, headers: response.headers, body: await response.json() };
      };

      const accepted = await call("/functions/task_b", {
        method: "POST",
        headers: { prefer: "respond-async" },
        body: '{"work_ms":100}',
      });
      assert.equal(accepted.status, 202);
      let done: Awaited<ReturnType<typeof call>> | undefined;
      await waitFor(
        async () => {
          done = await call(accepted.headers.get("location")!);
          return done.body.status !== "pending";
        },
        "the async call to end",
        60_000,
        200,
      );
      assert.equal(done!.body.status, "success");

      const long = await call("/functions/task_a", {
        method: "POST",
        headers: { prefer: "respond-async" },
        body: '{"work_ms":60000}',
      });
      const location = long.headers.get("location")!;
      let cancelled: Awaited<ReturnType<typeof call>> | undefined;
      await waitFor(
        async () => {
          cancelled = await call(location, { method: "DELETE" });
          return cancelled.body.cancel === "stopped";
        },
        "the running call to be stopped",
        30_000,
        300,
      );
      await waitFor(
        async () => {
          done = await call(location);
          return done.body.status !== "pending";
        },
        "the cancelled call to end",
        30_000,
        200,
      );
      assert.equal(done!.body.error.type, "Cancelled");

      // The same Idempotency-Key twice: one run, the first answer twice.
      const idempotencyKey = crypto.randomUUID();
      const once = () =>
        call("/functions/task_a", {
          method: "POST",
          headers: { "idempotency-key": idempotencyKey },
          body: '{"work_ms":50}',
        });
      const first = await once();
      const second = await once();
      assert.equal(first.status, 200, JSON.stringify(first.body));
      assert.equal(second.status, 200);
      assert.equal(second.body.id, first.body.id);
      assert.equal(second.headers.get("idempotent-replayed"), "true");
      const runsOf = async (id: string) =>
        (await stack!.compose(["logs", "--no-color", "worker-a"])).stdout.split("\n")
          .filter((line) => line.includes(id) && line.includes("Task succeeded")).length;
      await waitFor(async () => await runsOf(first.body.id) > 0, "task_a's log line", 30_000, 300);
      assert.equal(await runsOf(first.body.id), 1, "task_a ran once");

      // A key added on the host reaches the running gateway through its file mount: no restart.
      const made = await runDeno(
        [
          "run",
          "--allow-read",
          "--allow-write",
          "--allow-env",
          "gateway/main.ts",
          "keys",
          "add",
          "--keys-file",
          `${stack.secretsDir}/gateway_keys.json`,
          "--functions",
          "task_b",
        ],
        {},
        { timeoutMs: 60_000 },
      );
      assert.equal(made.code, 0, made.stderr);
      const added = made.stdout.trim();
      await waitFor(
        async () => {
          const response = await fetch(`${base}/openapi.json`, {
            headers: { authorization: `Bearer ${added}` },
            signal: AbortSignal.timeout(10_000),
          });
          await response.body?.cancel();
          return response.status === 200;
        },
        "the gateway to take the added key",
        30_000,
        300,
      );

      const event = await call("/events", {
        method: "POST",
        headers: {
          "ce-specversion": "1.0",
          "ce-type": "demo.greet",
          "ce-id": "gw-e2e-1",
          "ce-source": "/e2e",
        },
        body: "{}",
      });
      assert.equal(event.status, 202, JSON.stringify(event.body));

      const wrong = await fetch(`${base}/functions/task_a`, {
        method: "POST",
        headers: { authorization: `Bearer ${key.slice(0, -2)}xx` },
        body: "{}",
      });
      assert.equal(wrong.status, 401);
      await wrong.body?.cancel();

      const [id] = await stack.containers("gateway");
      const info = await stack.inspect(id);
      assert.equal(info.Config.User, "65532:65532");
      assert.equal(info.HostConfig.ReadonlyRootfs, true);
      const logs = (await stack.compose(["logs", "--no-color", "gateway", "gateway-init"])).stdout;
      assert.ok(!logs.includes(key.slice(20)), "no key in the gateway's logs");
      assert.match(logs, /listening on .*callbacks signed/);
      const secret = await Deno.stat(`${stack.secretsDir}/gateway_callback.secret`);
      assert.equal(secret.mode! & 0o777, 0o640);
      assert.equal(secret.gid, 65532, "readable by the gateway's group");
    } finally {
      await stack?.down();
    }
  },
});
