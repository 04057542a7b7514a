/**
 * The command-line programs as a user runs them (`deno task ...`), for what
 * only a real process shows: its permissions and how fast it gives up.
 * No broker or Docker needed.
 */

import assert from "node:assert/strict";
import { freePort } from "./_helpers.ts";
import { runDeno } from "./_processes.ts";
import { withTempDir } from "./_temp_dir.ts";

Deno.test("deno task status exits 3 within 5 s when nothing answers, or nothing listens", async () => {
  // A port that accepts connections and never speaks AMQP: the slow case.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const connection of listener) held.push(connection);
  })();
  try {
    for (const port of [(listener.addr as Deno.NetAddr).port, freePort()]) {
      const started = Date.now();
      // From the environment: deno task echoes its command line, --broker included.
      const run = await runDeno(["task", "status"], {
        AMQP_URL: `amqp://guest:secret@127.0.0.1:${port}`,
      });
      const took = Date.now() - started;
      assert.equal(run.code, 3, run.stdout + run.stderr);
      assert.ok(took < 5000, `gave up after ${took} ms`);
      assert.match(
        run.stdout,
        new RegExp(`Broker: amqp://guest:\\*\\*\\*@127\\.0\\.0\\.1:${port} \\(unreachable\\)`),
      );
      assert.match(run.stderr, /Cannot connect to the broker/);
      assert.ok(!(run.stdout + run.stderr).includes("secret"), "the password is masked");
    }
  } finally {
    listener.close();
    await accepting.catch(() => {});
    for (const connection of held) connection.close();
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
  for (const tool of ["dispatch", "load", "status", "dlq", "bench"]) {
    const run = await runDeno(["task", "-q", tool, "--help"]);
    assert.equal(run.code, 0, `${tool}: ${run.stderr}`);
    assert.match(run.stdout, /^ {2}70 +a bug/m, tool);
  }
});
