/**
 * The worker image's Deno permissions must match what the runtime reads:
 * a variable the runtime reads but the image does not allow would fail only
 * in the container.
 */

import assert from "node:assert/strict";
import { WORKER_ENV_VARS } from "../functions/_runtime/worker_settings.ts";

const dockerfile = await Deno.readTextFile(new URL("../Dockerfile.worker", import.meta.url));

/** The JSON array of an exec-form instruction, such as `CMD [...]`. */
function execForm(instruction: RegExp): string[] {
  const match = dockerfile.replace(/\\\n/g, " ").match(instruction);
  assert.ok(match, `Dockerfile.worker has ${instruction}`);
  return JSON.parse(match[1]);
}

const command = execForm(/^CMD (\[.*\])$/m);
const healthcheck = execForm(/^HEALTHCHECK .*?CMD (\[.*\])$/m);

function flagValues(args: string[], flag: string): string[] {
  const arg = args.find((a) => a.startsWith(`--${flag}=`));
  assert.ok(arg, `sets --${flag}`);
  return arg.slice(flag.length + 3).split(",");
}

Deno.test("Dockerfile.worker allows exactly the variables the worker reads", () => {
  assert.deepEqual(flagValues(command, "allow-env").sort(), [...WORKER_ENV_VARS].sort());
});

Deno.test("Dockerfile.worker lets the worker listen on the metrics port and checks /healthz", () => {
  assert.deepEqual(flagValues(command, "allow-net"), ["rabbitmq:5672", "0.0.0.0:9464"]);
  assert.equal(healthcheck[0], "/bin/deno");
  assert.ok(healthcheck.includes("--cached-only"), "runs from the build-time cache");
  assert.deepEqual(flagValues(healthcheck, "allow-net"), ["127.0.0.1"]);
  assert.deepEqual(flagValues(healthcheck, "allow-env"), ["METRICS_PORT"]);
  const script = healthcheck.at(-1)!;
  assert.equal(script, "functions/_runtime/healthcheck.ts");
  assert.match(dockerfile, new RegExp(`RUN \\["deno", "cache",[^\\]]*"${script}"`));
});

Deno.test("Dockerfile.worker grants no file, subprocess or FFI permission", () => {
  for (const flag of ["allow-all", "-A", "allow-read", "allow-write", "allow-run", "allow-ffi"]) {
    assert.ok(!dockerfile.includes(`"--${flag}`) && !dockerfile.includes(`"${flag}"`), flag);
  }
  assert.match(dockerfile, /"--cached-only"/);
  assert.match(dockerfile, /^USER 65532:65532$/m);
});
