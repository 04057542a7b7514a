/**
 * End to end: the containers from compose.yaml, driven the way a user drives
 * them: `docker compose up -d --build`, then `deno task dispatch`, then
 * `docker compose down -v`. The stack gets a project name and ports of its
 * own, so it never touches a stack or broker already running on the machine.
 */

import assert from "node:assert/strict";
import { createStack, docker } from "./_compose.ts";
import { NEEDS_DOCKER, waitFor } from "./_infra.ts";
import { runDeno } from "./_processes.ts";

Deno.test({
  name:
    "docker compose up -d --build, then deno task dispatch, returns both results from containers",
  ignore: NEEDS_DOCKER,
  async fn() {
    const stack = createStack("e2e");
    const compose = stack.compose;
    try {
      await compose(["up", "-d", "--build"]);
      const run = await runDeno(
        ["task", "dispatch", "--broker", stack.amqpUrl],
      );
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

      // The containers run as configured: non-root, read-only, no capabilities.
      for (const service of ["worker-a", "worker-b"]) {
        const [id] = await stack.containers(service);
        const inspect = await stack.inspect(id);
        assert.equal(inspect.Config.User, "65532:65532", `${service} runs as nonroot`);
        assert.equal(inspect.HostConfig.ReadonlyRootfs, true, `${service} has a read-only root`);
        assert.deepEqual(inspect.HostConfig.CapDrop, ["ALL"], `${service} drops capabilities`);
        assert.ok(
          (inspect.HostConfig.SecurityOpt ?? []).some((o) => o.startsWith("no-new-privileges")),
          `${service} has no-new-privileges`,
        );
        const image = inspect.Config.Image;
        const shell = await docker(
          ["run", "--rm", "--entrypoint", "/bin/sh", image, "-c", "true"],
          {},
          true,
        );
        assert.notEqual(shell.code, 0, `${service}'s image has no shell`);
      }

      // A stopped worker drains and exits 0.
      const [a] = await stack.containers("worker-a");
      await compose(["stop", "worker-a"]);
      const state = (await stack.inspect(a)).State;
      assert.equal(state.ExitCode, 0, "worker-a exits 0 on SIGTERM");
      await waitFor(
        async () => (await compose(["logs", "worker-a"])).text.includes('"msg":"Stopped"'),
        "stop log",
      );
    } finally {
      await stack.down();
    }
  },
});
