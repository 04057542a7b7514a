/**
 * `deno task new` in a copy of the repository, as a user runs it: the new
 * function's files pass the wiring check (every generated file what the
 * registry makes), its own test, the format check and `docker compose config`; `deno task dispatch --local` runs it; a
 * second run refuses to overwrite; and (with Docker) the compose stack
 * builds its worker and runs it.
 */

import assert from "node:assert/strict";
import { NEEDS_DOCKER } from "./_infra.ts";
import { freePort, uniqueName, waitFor } from "./_helpers.ts";
import { holdEngine } from "./_engine_lock.ts";
import { runCommand } from "./_command.ts";
import { copyRepository } from "./_repository.ts";

const NAME = "resize_image";

/** Runs `cmd` in `cwd`, killed and failing after 10 minutes (an image build is the longest). */
async function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  const output = await runCommand(cmd, args, {
    cwd,
    env: { NO_COLOR: "1", ...env },
    timeoutMs: 600_000,
  });
  return { code: output.code, stdout: output.stdout, text: output.stdout + output.stderr };
}

const deno = (args: string[], cwd: string, env: Record<string, string> = {}) =>
  run(Deno.execPath(), args, cwd, env);

async function withNewFunction(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await copyRepository();
  try {
    const made = await deno(["task", "new", NAME], dir);
    assert.equal(made.code, 0, made.text);
    assert.match(made.stdout, new RegExp(`created  functions/${NAME}\\.ts`));
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("deno task new makes a function that the checks pass and dispatch --local runs", async () => {
  await withNewFunction(async (dir) => {
    const tests = await deno(
      ["test", "-A", "tests/function_wiring_test.ts", `functions/${NAME}_test.ts`],
      dir,
    );
    assert.equal(tests.code, 0, tests.text);
    const format = await deno(["fmt", "--check"], dir);
    assert.equal(format.code, 0, format.text);

    const dispatched = await deno(
      ["task", "dispatch", "--local", "--scenario", NAME, "--no-save", "--quiet"],
      dir,
    );
    assert.equal(dispatched.code, 0, dispatched.text);
    assert.match(dispatched.text, /Passed: 1\/1/);

    const before = await Deno.readTextFile(`${dir}/functions/${NAME}.ts`);
    await Deno.writeTextFile(`${dir}/functions/${NAME}.ts`, before + "// edited\n");
    const again = await deno(["task", "new", NAME], dir);
    assert.equal(again.code, 2);
    assert.match(again.text, /functions\/registry\.yaml has it already/);
    assert.equal(
      await Deno.readTextFile(`${dir}/functions/${NAME}.ts`),
      before + "// edited\n",
      "nothing overwritten",
    );
    // A module left without its entry is not overwritten either.
    await Deno.writeTextFile(`${dir}/functions/orphan.ts`, "// mine\n");
    const refused = await deno(["task", "new", "orphan"], dir);
    assert.equal(refused.code, 2);
    assert.match(refused.text, /functions\/orphan\.ts exists/);
    assert.equal(await Deno.readTextFile(`${dir}/functions/orphan.ts`), "// mine\n");
    const bad = await deno(["task", "new", "Resize-Image"], dir);
    assert.equal(bad.code, 2);
    assert.match(bad.text, /not lower_snake_case/);
  });
});

Deno.test("deno task new --schedule writes the schedule, lets the scheduler fire into its queue and lists its ticks", async () => {
  const dir = await copyRepository();
  try {
    const refused = await deno(["task", "new", "nightly", "--time-zone", "Europe/Berlin"], dir);
    assert.equal(refused.code, 2);
    assert.match(refused.text, /Cannot use --time-zone without --schedule/);
    const bad = await deno(["task", "new", "nightly", "--schedule", "0 3 * *"], dir);
    assert.equal(bad.code, 2);
    assert.match(bad.text, /'0 3 \* \*' is not a cron pattern/);
    const made = await deno(
      ["task", "new", "nightly", "--schedule", "0 0 3 * * *", "--time-zone", "Europe/Berlin"],
      dir,
    );
    assert.equal(made.code, 0, made.text);
    assert.match(made.stdout, /on the schedule 0 0 3 \* \* \* \(Europe\/Berlin\)/);
    const compose = await Deno.readTextFile(`${dir}/compose.yaml`);
    assert.match(compose, /^ {6}- --scheduled=nightly$/m, "the scheduler may fire into its queue");
    assert.match(compose, /# Fires: nightly, 0 0 3 \* \* \* \(Europe\/Berlin\)/);
    const kubernetes = await Deno.readTextFile(`${dir}/ops/kubernetes/functions/scheduler.yaml`);
    assert.match(
      kubernetes,
      /write: \^\(tasks\\\.schedule\|tasks\\\.scheduler\|tasks\\\.events\|nightly\)\$/,
    );
    const checks = await deno(
      ["test", "-A", "tests/function_wiring_test.ts", "functions/nightly_test.ts"],
      dir,
    );
    assert.equal(checks.code, 0, checks.text);
    const listed = await deno(["task", "scheduler", "--list"], dir);
    assert.equal(listed.code, 0, listed.text);
    assert.match(
      listed.stdout,
      /^nightly on nightly: 0 0 3 \* \* \* \(Europe\/Berlin\), catch_up 60 s$/m,
    );
    assert.match(listed.stdout, /next: \d{4}-\d\d-\d\dT0[12]:00:00\.000Z/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "deno task new makes a function the compose files accept and the compose stack runs",
  ignore: NEEDS_DOCKER,
  async fn() {
    await using _engine = await holdEngine("shared");
    await withNewFunction(async (dir) => {
      for (const files of [["compose.yaml"], ["compose.yaml", "compose.cluster.yaml"]]) {
        const config = await run(
          "docker",
          ["compose", ...files.flatMap((f) => ["-f", f]), "config", "-q"],
          dir,
        );
        assert.equal(config.code, 0, config.text);
      }
      const project = uniqueName("newfn");
      const secretsDir = await Deno.makeTempDir({ prefix: "newfn-secrets-" });
      const port = freePort();
      const env = {
        COMPOSE_PROJECT_NAME: project,
        SECRETS_DIR: secretsDir,
        AMQP_PORT: String(port),
        MANAGEMENT_PORT: String(freePort()),
        DENO_IMAGE: Deno.env.get("DENO_IMAGE") ?? "denoland/deno:distroless-2.9.6",
        RABBITMQ_IMAGE: Deno.env.get("RABBITMQ_IMAGE") ?? "rabbitmq:4.0.5-management",
      };
      const service = `worker-${NAME.replaceAll("_", "-")}`;
      try {
        const up = await run("docker", ["compose", "up", "-d", "--build", service], dir, env);
        assert.equal(up.code, 0, up.text);
        let dispatched = { code: -1, text: "" };
        // The worker takes a moment to start consuming after the broker is up.
        await waitFor(
          async () => {
            dispatched = await deno(
              [
                "task",
                "dispatch",
                "--broker",
                `amqp://dispatcher@127.0.0.1:${port}`,
                "--scenario",
                NAME,
                "--wait-workers",
                "30",
                "--no-save",
                "--quiet",
              ],
              dir,
              { SECRETS_DIR: secretsDir },
            );
            return dispatched.code !== 3;
          },
          "the broker answers",
          90_000,
          1000,
        );
        assert.equal(dispatched.code, 0, dispatched.text);
        assert.match(dispatched.text, /Passed: 1\/1/);
      } finally {
        await run(
          "docker",
          ["compose", "down", "-v", "--rmi", "local", "--remove-orphans"],
          dir,
          env,
        );
        await run("docker", [
          "run",
          "--rm",
          "-u",
          "0",
          "-v",
          `${secretsDir}:/s`,
          env.DENO_IMAGE,
          "eval",
          "for (const e of Deno.readDirSync('/s')) Deno.removeSync('/s/' + e.name)",
        ], dir);
        await Deno.remove(secretsDir, { recursive: true }).catch(() => {});
      }
    });
  },
});
