import assert from "node:assert/strict";
import { main } from "./load_main.ts";

async function run(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    env: () => undefined,
    color: { out: false, err: false },
  });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

Deno.test("deno task load --local reports throughput, latency and per-worker counts", async () => {
  const { code, out } = await run(["--local", "--tasks", "50", "--no-save"]);
  assert.equal(code, 0, out);
  assert.match(out, /^Load: 50 tasks of task_a, task_b, 50 in flight, work_ms 0$/m);
  assert.match(out, /^Tasks: 50, succeeded: 50, failed: 0, timed out: 0$/m);
  assert.match(out, /^Throughput: \d+\.\d tasks\/s over \d+\.\d{3} s$/m);
  assert.match(
    out,
    /^Latency \(ms\): p50 [\d.]+, p90 [\d.]+, p99 [\d.]+, max [\d.]+, mean [\d.]+$/m,
  );
  assert.match(out, /^ {2}task_a@embedded: 25$/m);
  assert.match(out, /^ {2}task_b@embedded: 25$/m);
});

Deno.test("deno task load --json prints one document and saves it where --out says", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/load.json`;
    const { code, out, err } = await run([
      "--local",
      "--tasks",
      "20",
      "--function",
      "task_a",
      "--json",
      "--out",
      file,
    ]);
    assert.equal(code, 0, err);
    const document = JSON.parse(out);
    assert.equal(document.kind, "load");
    assert.equal(document.tasks, 20);
    assert.equal(document.succeeded, 20);
    assert.deepEqual(document.options.functions, ["task_a"]);
    assert.deepEqual(Object.keys(document.perWorker), ["task_a@embedded"]);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(file)), document);
    assert.match(err, new RegExp(`Results saved to ${file}`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno task load refuses bad flags with exit code 2", async () => {
  for (
    const args of [
      ["--tasks", "0"],
      ["--rate", "5", "--concurrency", "2"],
      ["--work-ms", "-1"],
      ["--function", "task_z"],
      ["--out", "x.json", "--no-save"],
    ]
  ) {
    const { code, err } = await run(args);
    assert.equal(code, 2, args.join(" "));
    assert.match(err, /^Cannot /, args.join(" "));
  }
});
