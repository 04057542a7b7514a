/**
 * The command-line programs as a user runs them (`deno task ...`), for what
 * only a real process shows: its permissions and how fast it gives up.
 * No broker or Docker needed.
 */

import assert from "node:assert/strict";
import { freePort } from "./_helpers.ts";
import { runDeno } from "./_processes.ts";

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

Deno.test("deno task dispatch refuses an output path it may not write, before sending anything", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const flag of ["--junit", "--html", "--out"]) {
      const path = `${dir}/report`;
      const run = await runDeno(["task", "dispatch", "--local", flag, path]);
      assert.equal(run.code, 2, `${flag}: ${run.stdout}${run.stderr}`);
      assert.match(run.stderr, /may only write where --allow-write lets it .*under results\//);
      assert.match(run.stderr, /use a path such as results\/report/);
      assert.doesNotMatch(run.stdout, /Dispatching/);
      await assert.rejects(() => Deno.stat(path), Deno.errors.NotFound);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
