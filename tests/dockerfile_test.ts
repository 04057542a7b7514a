/**
 * The worker image's Deno permissions must match what the runtime reads:
 * a variable the runtime reads but the image does not allow would fail only
 * in the container.
 */

import assert from "node:assert/strict";
import { WORKER_ENV_VARS } from "../functions/_runtime/worker_settings.ts";

const dockerfile = await Deno.readTextFile(new URL("../Dockerfile.worker", import.meta.url));

function flagValues(flag: string): string[] {
  const match = dockerfile.match(new RegExp(`"--${flag}=([^"]*)"`));
  assert.ok(match, `Dockerfile.worker sets --${flag}`);
  return match[1].split(",");
}

Deno.test("Dockerfile.worker allows exactly the variables the worker reads", () => {
  assert.deepEqual(flagValues("allow-env").sort(), [...WORKER_ENV_VARS].sort());
});

Deno.test("Dockerfile.worker grants no file, subprocess or FFI permission", () => {
  for (const flag of ["allow-all", "-A", "allow-read", "allow-write", "allow-run", "allow-ffi"]) {
    assert.ok(!dockerfile.includes(`"--${flag}`) && !dockerfile.includes(`"${flag}"`), flag);
  }
  assert.match(dockerfile, /"--cached-only"/);
  assert.match(dockerfile, /^USER 65532:65532$/m);
});
