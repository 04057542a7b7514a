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

const ROOT = new URL("../", import.meta.url);
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

/** A copy of the repository's files (tracked, and new ones not ignored) in a temporary directory. */
async function copyRepository(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "new-function-" });
  const listed = await run(
    "git",
    ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    ROOT.pathname,
  );
  assert.equal(listed.code, 0, listed.text);
  for (const path of listed.stdout.split("\0").filter(Boolean)) {
    const from = new URL(path, ROOT);
    try {
      if (!(await Deno.lstat(from)).isFile) continue;
    } catch {
      continue; // Deleted in the work tree.
    }
    const to = `${dir}/${path}`;
    await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
    await Deno.copyFile(from, to);
  }
  return dir;
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
