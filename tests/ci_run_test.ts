/**
 * What .ci/run promises about the test run itself, checked without running
 * it: CI=true whatever the runner set, kubectl found or installed, and a
 * run with any ignored test failing.
 */

import assert from "node:assert/strict";
import { runCommand } from "./_command.ts";

const ROOT = new URL("../", import.meta.url);
const run = await Deno.readTextFile(new URL(".ci/run", ROOT));

async function failOnIgnored(output: string) {
  const log = await Deno.makeTempFile({ prefix: "deno_test_log_" });
  try {
    await Deno.writeTextFile(log, output);
    return await runCommand(".ci/fail_on_ignored", [log], { cwd: ROOT, timeoutMs: 30_000 });
  } finally {
    await Deno.remove(log);
  }
}

Deno.test(".ci/run sets CI=true whatever the runner set, so no gate skips silently", () => {
  assert.match(run, /^export CI=true$/m);
  assert.doesNotMatch(run, /CI:-|CI=\$\{/, "a runner's CI=1 must not survive");
  const provision = run.indexOf('eval "$exports"');
  assert.ok(provision > 0 && provision < run.indexOf("export CI=true"), "set after provisioning");
});

Deno.test(".ci/run runs the tests through .ci/fail_on_ignored, and kubectl through .ci/kubectl", () => {
  assert.match(run, /^NO_COLOR=1 deno task test 2>&1 \| tee "\$log"$/m);
  assert.match(run, /^\.ci\/fail_on_ignored "\$log"$/m);
  assert.match(run, /^set -euo pipefail$/m, "a failed deno test fails the pipe");
  assert.match(run, /^KUBECTL=\$\(\.ci\/kubectl\)$/m);
  assert.match(run, /^export KUBECTL$/m);
});

Deno.test(".ci/fail_on_ignored fails a run that ignored a test or a step, naming it", async () => {
  const ignored = await failOnIgnored([
    "running 2 tests from ./tests/e2e_test.ts",
    "compose stack end to end ... ignored (0ms)",
    "rotates passwords ... ok (3s)",
    "",
    "ok | 1 passed | 0 failed | 1 ignored (3s)",
  ].join("\n"));
  assert.equal(ignored.code, 1);
  assert.match(ignored.stderr, /compose stack end to end \.\.\. ignored/);
  assert.match(ignored.stderr, /Cannot pass CI as tests were ignored/);

  const step = await failOnIgnored(
    "./a_test.ts => z ... s ... ignored (0ms)\nok | 2 passed | 0 failed | 0 ignored (1 step) (7ms)\n",
  );
  assert.equal(step.code, 1, "an ignored step counts too");
});

Deno.test(".ci/fail_on_ignored passes a run in which every test ran", async () => {
  const clean = await failOnIgnored(
    "a test that mentions ignored replies ... ok (1ms)\n\nok | 12 passed (3 steps) | 0 failed (2s)\n",
  );
  assert.equal(clean.code, 0, clean.stderr);
  const failed = await failOnIgnored("x ... FAILED (1ms)\n\nFAILED | 0 passed | 1 failed (1ms)\n");
  assert.equal(failed.code, 0, "failures are deno test's to report, not this script's");
});
