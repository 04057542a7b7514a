/**
 * End to end: the containers from compose.yaml, driven the way a user drives
 * them: `docker compose up -d --build` (with a second replica of worker-a),
 * `deno task dispatch` and `deno task status`, then `docker compose down -v`.
 * The stack gets a project name and ports of its own, so it never touches a
 * stack or broker already running on the machine.
 */

import assert from "node:assert/strict";
import type { SystemStatus } from "../dispatcher/gather_status.ts";
import type { RunDocument } from "../dispatcher/run_document.ts";
import { freePort, NEEDS_DOCKER, uniqueName, waitFor } from "./_infra.ts";
import { runDeno } from "./_processes.ts";
import { parsePrometheus } from "./_prometheus.ts";

const ROOT = new URL("../", import.meta.url);
const decoder = new TextDecoder();

/** Runs `docker <args>` in the project root; fails with its output unless it succeeds. */
async function docker(args: string[], env: Record<string, string> = {}, allowFailure = false) {
  const output = await new Deno.Command("docker", {
    args,
    cwd: ROOT,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = decoder.decode(output.stdout) + decoder.decode(output.stderr);
  if (!output.success && !allowFailure) {
    throw new Error(`docker ${args.join(" ")} failed (${output.code}):\n${text}`);
  }
  return { code: output.code, text, stdout: decoder.decode(output.stdout).trim() };
}

Deno.test({
  name:
    "docker compose up --scale worker-a=2: healthy workers answer dispatch, status and /metrics alike",
  ignore: NEEDS_DOCKER,
  async fn() {
    const project = uniqueName("e2e");
    const amqpPort = freePort();
    const env = {
      AMQP_PORT: String(amqpPort),
      MANAGEMENT_PORT: String(freePort()),
      COMPOSE_PROJECT_NAME: project,
    };
    const compose = (args: string[], allowFailure = false) =>
      docker(["compose", "-p", project, ...args], env, allowFailure);
    const ids = async (service: string) =>
      (await compose(["ps", "-q", service])).stdout.split("\n").filter(Boolean);
    const inspect = async (id: string) => JSON.parse((await docker(["inspect", id])).stdout)[0];
    const broker = `amqp://guest:guest@127.0.0.1:${amqpPort}`;
    const results = `results/${project}.json`;
    try {
      // Two replicas of worker-a: workers publish no host port, so they scale.
      await compose(["up", "-d", "--build", "--scale", "worker-a=2"]);
      const workers = [...await ids("worker-a"), ...await ids("worker-b")];
      assert.equal(workers.length, 3);
      // Each turns healthy through the image's HEALTHCHECK: GET /healthz answers 200.
      await waitFor(
        async () => {
          for (const id of workers) {
            if ((await inspect(id)).State.Health?.Status !== "healthy") return false;
          }
          return true;
        },
        "three healthy workers",
        90_000,
        500,
      );

      const run = await runDeno(["task", "dispatch", "--broker", broker, "--out", results]);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      const out = run.stdout;
      assert.match(out, /^Loaded config: Distributed task system demo \(test-config\.yml\)$/m);
      assert.match(out, /^Expected workers: 2$/m);
      assert.match(out, /^Dispatching tasks\.\.\.$/m);
      // Worker ids carry the container's host name: its short container id.
      assert.match(
        out,
        /^Result from task_a: Hello from Task A \(\d\.\d{3} s, attempts: 1, worker: task_a@[0-9a-f]{12}-\d+\)$/m,
      );
      assert.match(
        out,
        /^Result from task_b: Hello from Task B \(\d\.\d{3} s, attempts: 1, worker: task_b@[0-9a-f]{12}-\d+\)$/m,
      );
      assert.match(out, /^Total wall time: \d\.\d{3} s; sum of task times: \d\.\d{3} s/m);
      assert.match(out, /^Passed: 2\/2$/m);
      assert.match(out, /^Active workers: 3$/m);
      const document: RunDocument = JSON.parse(await Deno.readTextFile(results));
      assert.deepEqual(document.workers.map((w) => w.queue), ["queue_a", "queue_a", "queue_b"]);

      // deno task status lists the three running workers.
      const status = await runDeno(["task", "-q", "status", "--json"], { AMQP_URL: broker });
      assert.equal(status.code, 0, status.stdout + status.stderr);
      const system: SystemStatus = JSON.parse(status.stdout);
      assert.deepEqual(
        system.workers.map((w) => [w.function, w.queue]),
        [["task_a", "queue_a"], ["task_a", "queue_a"], ["task_b", "queue_b"]],
      );
      for (const w of system.workers) assert.match(w.worker, /^task_[ab]@[0-9a-f]{12}-\d+$/);
      assert.deepEqual(system.queues.map((q) => [q.queue, q.consumers, q.workers]), [
        ["queue_a", 2, 2],
        ["queue_b", 1, 1],
      ]);
      assert.equal(system.workers.reduce((sum, w) => sum + w.tasks_done, 0), 2);

      // /metrics of every replica, on the container network: the counts add
      // up to what was sent. And each worker's logs are JSON with the task ids.
      const done = new Map<string, number>();
      for (const id of workers) {
        const container = await inspect(id);
        const network = Object.values(container.NetworkSettings.Networks)[0] as {
          IPAddress: string;
        };
        const response = await fetch(`http://${network.IPAddress}:9464/metrics`);
        const metrics = parsePrometheus(await response.text());
        const fn = container.Config.Labels["org.opencontainers.image.title"].replace("worker-", "");
        done.set(
          fn,
          (done.get(fn) ?? 0) + metrics.value("worker_tasks_total", { status: "success" }),
        );
        const health = await fetch(`http://${network.IPAddress}:9464/healthz`);
        assert.equal(health.status, 200);
        await health.body?.cancel();
      }
      assert.deepEqual(Object.fromEntries(done), { task_a: 1, task_b: 1 });
      for (const task of document.tasks) {
        const container = workers.find((id) => task.worker!.includes(`@${id.slice(0, 12)}-`));
        assert.ok(container, `the container of ${task.worker}`);
        const logs = (await docker(["logs", container])).stdout.split("\n").filter(Boolean);
        const entries = logs.map((line) => JSON.parse(line));
        const succeeded = entries.find((e) => e.msg === "Task succeeded");
        assert.equal(succeeded?.task_id, task.task_id);
        assert.equal(succeeded?.worker, task.worker);
      }

      // The containers run as configured: non-root, read-only, no capabilities,
      // no host port; each image has no shell.
      const images = new Set<string>();
      for (const id of workers) {
        const container = await inspect(id);
        const name = container.Name;
        assert.equal(container.Config.User, "65532:65532", `${name} runs as nonroot`);
        assert.equal(container.HostConfig.ReadonlyRootfs, true, `${name} has a read-only root`);
        assert.deepEqual(container.HostConfig.CapDrop, ["ALL"], `${name} drops capabilities`);
        assert.ok(
          container.HostConfig.SecurityOpt.some((o: string) => o.startsWith("no-new-privileges")),
          `${name} has no-new-privileges`,
        );
        assert.deepEqual(container.HostConfig.PortBindings ?? {}, {}, `${name} publishes no port`);
        images.add(container.Config.Image);
      }
      for (const image of images) {
        const shell = await docker(
          ["run", "--rm", "--entrypoint", "/bin/sh", image, "-c", "true"],
          {},
          true,
        );
        assert.notEqual(shell.code, 0, `${image} has no shell`);
      }

      // A stopped worker drains and exits 0.
      const replicas = await ids("worker-a");
      await compose(["stop", "worker-a"]);
      for (const id of replicas) {
        assert.equal((await inspect(id)).State.ExitCode, 0, "worker-a exits 0 on SIGTERM");
      }
      await waitFor(
        async () => (await compose(["logs", "worker-a"])).text.includes('"msg":"Stopped"'),
        "stop log",
      );
    } finally {
      await Deno.remove(results).catch(() => {});
      const down = await compose(["down", "-v", "--rmi", "local", "--remove-orphans"], true);
      if (down.code !== 0) console.error(down.text);
    }
  },
});
