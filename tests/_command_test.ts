import assert from "node:assert/strict";
import { DeadlineError, runCommand, withDeadline } from "./_command.ts";
import { exitWithin, runDeno, startDeno } from "./_processes.ts";
import { docker } from "./_docker.ts";

// A child that prints what it waits for, then waits for ever.
const HANG = "console.log('waiting for the broker'); setInterval(() => {}, 1000);";

Deno.test("runDeno() kills a child that outlives its deadline and names it with its output", async () => {
  const started = Date.now();
  const error = await runDeno(["eval", HANG], {}, { timeoutMs: 1000 }).then(
    () => assert.fail("a hanging child must fail the test"),
    (error) => error,
  );
  assert.ok(error instanceof DeadlineError, String(error));
  assert.match(error.message, /^Timed out after 1000 ms waiting for `deno eval console\.log/);
  assert.match(error.message, /Its output so far:\nwaiting for the broker/);
  assert.ok(Date.now() - started < 30_000, "failed at its deadline, not at CI's");
});

Deno.test("runCommand() kills the whole process group, grandchildren included", async () => {
  const marker = crypto.randomUUID();
  // The shell starts a grandchild that holds the pipes; killing only the shell would hang here.
  await assert.rejects(
    runCommand("bash", ["-c", `sleep 300 ${marker.length} & echo ${marker}; wait`], {
      timeoutMs: 500,
    }),
    (error: Error) => error instanceof DeadlineError && error.message.includes(marker),
  );
  const left = await runCommand("pgrep", ["-f", `sleep 300 ${marker.length}`], {
    timeoutMs: 10_000,
  });
  assert.equal(left.stdout.trim(), "", "no sleep of the killed group is left");
});

Deno.test("runCommand() returns a child's exit code and output when it finishes in time", async () => {
  const result = await runCommand("bash", ["-c", "echo out; echo err >&2; exit 3"], {
    timeoutMs: 30_000,
  });
  assert.deepEqual(result, { code: 3, stdout: "out\n", stderr: "err\n" });
});

Deno.test("docker() fails a command that outlives its deadline, naming it", async () => {
  // A fake docker on PATH that hangs, as a stuck engine would.
  const dir = await Deno.makeTempDir({ prefix: "fake_docker_" });
  try {
    await Deno.writeTextFile(`${dir}/docker`, '#!/bin/sh\necho "pulling $*"\nexec sleep 300\n');
    await Deno.chmod(`${dir}/docker`, 0o755);
    const path = `${dir}:${Deno.env.get("PATH")}`;
    await assert.rejects(
      docker(["compose", "up", "--build"], { PATH: path }, { timeoutMs: 500 }),
      (error: Error) =>
        error instanceof DeadlineError &&
        /waiting for `docker compose up --build`/.test(error.message) &&
        /pulling compose up --build/.test(error.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("exitWithin() kills a started process that never exits, naming what was awaited", async () => {
  const process = startDeno(["eval", HANG]);
  await process.waitForLine(/waiting for the broker/, 30_000);
  await assert.rejects(
    exitWithin(process, 500, "the fixture's third crash"),
    /Timed out after 500 ms waiting for the fixture's third crash: killed it\. Its output so far:\nwaiting for the broker/,
  );
  assert.equal((await process.child.status).signal, "SIGKILL");
  await process.stop();
});

Deno.test("withDeadline() resolves as its promise does when in time", async () => {
  assert.equal(await withDeadline(Promise.resolve(7), 1000, "seven"), 7);
  await assert.rejects(withDeadline(Promise.reject(new RangeError("no")), 1000, "x"), RangeError);
});
