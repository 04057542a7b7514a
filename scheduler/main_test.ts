import assert from "node:assert/strict";
import { handleHealthRequest } from "./health.ts";
import { main, SCHEDULER_EXIT } from "./main.ts";
import { withTempDir } from "../tests/_temp_dir.ts";

async function run(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    env: () => undefined,
    signal: AbortSignal.abort(),
    hostname: () => "test",
  });
  return { code, out, err };
}

Deno.test("deno task scheduler --help names every flag and the exit codes", async () => {
  const { code, out } = await run(["--help"]);
  assert.equal(code, SCHEDULER_EXIT.stopped);
  for (
    const flag of ["--registry", "--broker", "--id", "--queue-type", "--health-port", "--list"]
  ) {
    assert.ok(out[0].includes(flag), flag);
  }
  assert.match(out[0], /Exit codes:\n {2}0 .*\n {2}1 .*\n(.*\n)* {2}2 .*\n {2}70 /);
});

Deno.test("deno task scheduler exits 2 on a bad flag, naming it and the fix", async () => {
  assert.deepEqual(await run(["--queue-type", "stream"]), {
    code: 2,
    out: [],
    err: ["Cannot use --queue-type 'stream': use quorum or classic"],
  });
  assert.equal((await run(["--nope"])).code, 2);
  assert.match((await run(["--health-port", "70000"])).err[0], /--health-port '70000'/);
  assert.match((await run(["--state-queue", "Bad Name"])).err[0], /--state-queue 'Bad Name'/);
});

Deno.test("deno task scheduler --list prints each schedule and its next ticks, and a registry problem exits 2 at its line", async () => {
  await withTempDir(async (dir) => {
    const file = `${dir}/registry.yaml`;
    await Deno.writeTextFile(
      file,
      `functions:
  report: { queue: reports, schedule: { cron: "0 0 3 * * *", time_zone: Europe/Berlin } }
  plain: { queue: plain }
`,
    );
    const listed = await run(["--list", "--registry", file]);
    assert.equal(listed.code, 0);
    assert.equal(listed.out[0], "report on reports: 0 0 3 * * * (Europe/Berlin), catch_up 60 s");
    assert.match(listed.out[1], /^ {2}next: \d{4}-\d\d-\d\dT0[12]:00:00\.000Z, /);
    assert.equal(listed.out.length, 2, "a function without a schedule is not listed");

    await Deno.writeTextFile(
      file,
      `functions:\n  report: { queue: reports, schedule: "0 0 3 *" }\n`,
    );
    const bad = await run(["--list", "--registry", file]);
    assert.equal(bad.code, 2);
    assert.match(bad.err[0], new RegExp(`${file}:2:39: functions\\.report\\.schedule\\.cron: `));
  });
});

Deno.test("handleHealthRequest() answers 503 until connected, then 200 active or standby", async () => {
  const get = (state: { connected: boolean; active: boolean }) =>
    handleHealthRequest(new Request("http://x/healthz"), state);
  assert.equal(get({ connected: false, active: false }).status, 503);
  const standby = get({ connected: true, active: false });
  assert.equal(standby.status, 200);
  assert.equal(await standby.text(), "ok: standby\n");
  const active = get({ connected: true, active: true });
  assert.equal(active.status, 200);
  assert.equal(await active.text(), "ok: active\n");
  assert.equal(
    handleHealthRequest(new Request("http://x/metrics"), {
      connected: true,
      active: true,
    }).status,
    404,
  );
});
