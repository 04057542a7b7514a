/**
 * The command-line programs as a user runs them (`deno task ...`), for what
 * only a real process shows: its permissions and how fast it gives up.
 * No broker or Docker needed.
 */

import assert from "node:assert/strict";
import { freePort } from "./_helpers.ts";
import { runDeno } from "./_processes.ts";
import { withTempDir } from "./_temp_dir.ts";

/**
 * Resolves "gave up" when the peer of `connection` closes it, or "still
 * connected" once `ms` have passed since it connected: both in this process,
 * so a slow start of the program under test does not count.
 */
function closedWithin(connection: Deno.Conn, ms: number): Promise<string> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`still connected ${ms} ms after connecting`), ms);
  });
  const closed = (async () => {
    const buffer = new Uint8Array(1024);
    while ((await connection.read(buffer).catch(() => null)) !== null) {
      // What it sends (AMQP's protocol header) is never answered.
    }
    return "gave up";
  })();
  return Promise.race([closed, late]).finally(() => clearTimeout(timer));
}

Deno.test("deno task status exits 3 within 5 s when nothing answers, or nothing listens", async () => {
  // A port that accepts connections and never speaks AMQP: the slow case.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const verdicts: Promise<string>[] = [];
  const accepting = (async () => {
    for await (const connection of listener) {
      held.push(connection);
      verdicts.push(closedWithin(connection, 5000));
    }
  })();
  try {
    for (const port of [(listener.addr as Deno.NetAddr).port, freePort()]) {
      // From the environment: deno task echoes its command line, --broker included.
      // A status that never gave up would fail at this deadline, naming the command.
      const run = await runDeno(["task", "status"], {
        AMQP_URL: `amqp://guest:secret@127.0.0.1:${port}`,
      }, { timeoutMs: 60_000 });
      assert.equal(run.code, 3, run.stdout + run.stderr);
      assert.match(
        run.stdout,
        new RegExp(`Broker: amqp://guest:\\*\\*\\*@127\\.0\\.0\\.1:${port} \\(unreachable\\)`),
      );
      assert.match(run.stderr, /Cannot connect to the broker/);
      assert.ok(!(run.stdout + run.stderr).includes("secret"), "the password is masked");
    }
    // Timed from its connection, not from a process start that load can slow.
    assert.ok(verdicts.length > 0, "it connected to the silent port");
    assert.deepEqual(await Promise.all(verdicts), verdicts.map(() => "gave up"));
  } finally {
    listener.close();
    await accepting.catch(() => {});
    for (const connection of held) {
      try {
        connection.close();
      } catch {
        // Closed by its peer already.
      }
    }
  }
});

Deno.test("deno task dispatch writes --out, --junit and --html wherever they say, making folders", async () => {
  await withTempDir(async (dir) => {
    const paths = {
      out: `${dir}/a/run.json`,
      junit: `${dir}/b/c/report.xml`,
      html: `${dir}/r.html`,
    };
    const run = await runDeno([
      "task",
      "dispatch",
      "--local",
      "--quiet",
      "--out",
      paths.out,
      "--junit",
      paths.junit,
      "--html",
      paths.html,
    ]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    for (const path of Object.values(paths)) {
      assert.ok((await Deno.stat(path)).size > 0, `${path} written`);
    }
  });
});

Deno.test("deno task dispatch and load refuse a path they cannot write, before sending anything", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/file`, "");
    const cases: [string[], RegExp][] = [
      [["dispatch", "--local", "--junit", dir], new RegExp(`--junit '${dir}' as it is a folder`)],
      [
        ["dispatch", "--local", "--html", `${dir}/file/report.html`],
        /--html '.*\/file\/report\.html' as its folder '.*\/file' cannot be made: a file of that name is in the way/,
      ],
      [["dispatch", "--local", "--out", "/proc/run.json"], /--out '\/proc\/run\.json'/],
      [["load", "--local", "--out", dir], new RegExp(`--out '${dir}' as it is a folder`)],
    ];
    for (const [args, pattern] of cases) {
      const run = await runDeno(["task", ...args]);
      assert.equal(run.code, 2, `${args.join(" ")}: ${run.stdout}${run.stderr}`);
      assert.match(run.stderr, /^Cannot write /m);
      assert.match(run.stderr, pattern);
      assert.doesNotMatch(run.stdout + run.stderr, /Dispatching|Load: /, "nothing was sent");
    }
  });
});

Deno.test("every tool's --help documents exit code 70 for a bug", async () => {
  for (const tool of ["dispatch", "load", "status", "dlq", "cancel", "bench"]) {
    const run = await runDeno(["task", "-q", tool, "--help"]);
    assert.equal(run.code, 0, `${tool}: ${run.stderr}`);
    assert.match(run.stdout, /^ {2}70 +a bug/m, tool);
  }
});
