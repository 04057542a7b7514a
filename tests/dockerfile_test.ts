/**
 * The worker image's Deno permissions must match what the runtime reads:
 * a variable or a file the runtime reads but the image does not allow would
 * fail only in the container, and one the image allows but the runtime does
 * not need would widen what a function can reach.
 */

import assert from "node:assert/strict";
import { WORKER_ENV_VARS, WORKER_IMAGE_FILES } from "../runtime/defaults.ts";
import { workerCommand } from "./_docker.ts";
import { loadRegistry } from "../core/registry.ts";

const dockerfile = await Deno.readTextFile(new URL("../Dockerfile.worker", import.meta.url));
const command = await workerCommand();

/** The JSON array of an exec-form instruction, such as `HEALTHCHECK ... CMD [...]`. */
function execForm(instruction: RegExp): string[] {
  const match = dockerfile.replace(/\\\n/g, " ").match(instruction);
  assert.ok(match, `Dockerfile.worker has ${instruction}`);
  return JSON.parse(match[1]);
}

const healthcheck = execForm(/^HEALTHCHECK .*?CMD (\[.*\])$/m);

function flagValues(args: string[], flag: string): string[] {
  const arg = args.find((a) => a.startsWith(`--${flag}=`));
  assert.ok(arg, `sets --${flag}`);
  return arg.slice(flag.length + 3).split(",");
}

Deno.test("Dockerfile.worker allows exactly the variables the worker reads", () => {
  assert.deepEqual(flagValues(command, "allow-env").sort(), [...WORKER_ENV_VARS].sort());
});

Deno.test("Dockerfile.worker allows reading exactly the worker's secret file paths and its code", () => {
  assert.deepEqual(
    flagValues(command, "allow-read").sort(),
    ["/app/functions", "/app/runtime", "/app/core", ...Object.values(WORKER_IMAGE_FILES)].sort(),
  );
  for (const [variable, path] of Object.entries(WORKER_IMAGE_FILES)) {
    assert.ok(WORKER_ENV_VARS.includes(variable as never), `${variable} is a worker variable`);
    assert.match(path, /^\/run\/secrets\/[a-z_.]+$/, `${variable} is read from /run/secrets`);
  }
});

Deno.test("Dockerfile.worker grants no write, subprocess or FFI permission; the broker and metrics only", () => {
  for (const flag of ["--allow-all", "-A", "--allow-write", "--allow-run", "--allow-ffi"]) {
    assert.ok(!command.some((arg) => arg === flag || arg.startsWith(`${flag}=`)), flag);
  }
  assert.deepEqual(flagValues(command, "allow-net"), ["rabbitmq:5672", "0.0.0.0:9464"]);
  assert.deepEqual(flagValues(command, "allow-sys"), ["hostname"]);
  assert.ok(command.includes("--cached-only") && command.includes("--no-prompt"));
  assert.match(dockerfile, /^USER 65532:65532$/m);
});

Deno.test("Dockerfile.worker starts the runtime, which sandboxes the function, never the function itself", () => {
  assert.ok(
    command.includes("--unstable-worker-options"),
    "the sandbox needs Web Worker permissions",
  );
  assert.deepEqual(command.slice(-2), [
    "runtime/process/main.ts",
    "/app/functions/function.ts",
  ]);
  assert.match(
    dockerfile,
    /^COPY \$\{FUNCTIONS_DIR\}\/\$\{FUNCTION\}\.ts functions\/function\.ts$/m,
  );
  const cached = dockerfile.match(/RUN \["deno", "cache",[^\]]*\]/)?.[0] ?? "";
  for (const module of ["process/main.ts", "sandbox/serve_function.ts", "process/health.ts"]) {
    assert.ok(
      cached.includes(`runtime/${module}`),
      `${module} is cached at build`,
    );
  }
});

Deno.test("Dockerfile.worker checks /healthz from the build-time cache", () => {
  assert.equal(healthcheck[0], "/bin/deno");
  assert.ok(healthcheck.includes("--cached-only"), "runs from the build-time cache");
  assert.deepEqual(flagValues(healthcheck, "allow-net"), ["127.0.0.1"]);
  assert.deepEqual(flagValues(healthcheck, "allow-env"), ["METRICS_PORT"]);
  const script = healthcheck.at(-1)!;
  assert.equal(script, "runtime/process/health.ts");
  assert.match(dockerfile, new RegExp(`RUN \\["deno", "cache",[^\\]]*"${script}"`));
});

Deno.test("the worker image's own config pins the runtime's dependencies as deno.json does, and its lockfile is in sync", async () => {
  const root = new URL("../", import.meta.url);
  const project = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));
  const image = JSON.parse(await Deno.readTextFile(new URL("worker.deno.json", root)));
  for (const [name, specifier] of Object.entries(image.imports)) {
    assert.equal(specifier, project.imports[name], `${name} is the same in both`);
  }
  assert.deepEqual(image.unstable, ["worker-options"]);
  assert.match(dockerfile, /^COPY worker\.deno\.json \.\/deno\.json$/m);
  const registry = await loadRegistry(
    decodeURIComponent(new URL("functions/registry.yaml", root).pathname),
  );
  // Frozen: fails if the lockfile would have to change, as the image build would.
  const cached = await new Deno.Command(Deno.execPath(), {
    args: [
      "cache",
      "--frozen",
      "--config",
      "worker.deno.json",
      "runtime/process/main.ts",
      ...[...registry.functions.values()].filter((fn) => fn.protocol === "native")
        .map(({ name }) => `functions/${name}.ts`),
      "tests/fixtures/functions/escape.ts",
    ],
    cwd: root,
  }).output();
  assert.equal(
    cached.code,
    0,
    `worker.deno.lock is out of date: run 'deno task lock:worker'\n${
      new TextDecoder().decode(cached.stderr)
    }`,
  );
});
