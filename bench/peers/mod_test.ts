import assert from "node:assert/strict";
import { median } from "../stats.ts";
import {
  nodeMajor,
  parseClientOutput,
  parseParentPid,
  parseVmRssKb,
  redisVersion,
  summarize,
} from "./_figures.ts";
import { peerClientTimeoutMs, processTree, spawn, treeRssMb } from "./_process.ts";
import { defaultAmqpUrl, type PeerName, peersAvailable, runPeer } from "./mod.ts";

Deno.test("median() takes the middle value, or the mean of the two middle ones", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.throws(() => median([]), RangeError);
});

Deno.test("parseClientOutput() reads the last stdout line and checks its shape", () => {
  const figures = parseClientOutput(
    'warming up\n{"tps":{"1000":[2000.5,2100]},"seed_ms":[204.1],"versions":{"celery":"5.2.6"}}\n',
  );
  assert.deepEqual(figures.tps, { "1000": [2000.5, 2100] });
  assert.deepEqual(figures.seed_ms, [204.1]);
  assert.equal(figures.versions?.celery, "5.2.6");
  assert.throws(() => parseClientOutput("Traceback (most recent call last):"), SyntaxError);
  assert.throws(() => parseClientOutput('{"tps":{"1000":["fast"]},"seed_ms":[]}'), SyntaxError);
  assert.throws(() => parseClientOutput('{"tps":{}}'), SyntaxError);
});

Deno.test("summarize() gives the median tasks/s by size and the seed overhead over 200 ms", () => {
  const summary = summarize({
    tps: { "1000": [1000, 3000, 2000.04], "10000": [5000] },
    seed_ms: [204, 206.5, 205],
  });
  assert.deepEqual(summary.tps, { "1000": 2000, "10000": 5000 });
  assert.deepEqual(summary.tps_samples["1000"], [1000, 3000, 2000]);
  assert.equal(summary.seed_overhead_ms_median, 5);
  assert.deepEqual(summary.seed_samples_ms, [204, 206.5, 205]);
});

Deno.test("nodeMajor() and redisVersion() read the tools' version answers", () => {
  assert.equal(nodeMajor("v20.20.2\n"), 20);
  assert.ok(Number.isNaN(nodeMajor("command not found")));
  assert.equal(
    redisVersion("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64"),
    "7.0.15",
  );
  assert.equal(redisVersion(""), undefined);
});

Deno.test("parseVmRssKb() reads VmRSS, and 0 for a zombie without one", () => {
  assert.equal(
    parseVmRssKb("Name:\tnode\nVmPeak:\t 900 kB\nVmRSS:\t   70312 kB\nVmData: 1 kB\n"),
    70312,
  );
  assert.equal(parseVmRssKb("Name:\tpython3\nState:\tZ (zombie)\n"), 0);
});

Deno.test("parseParentPid() reads the parent pid after a command name with spaces and parens", () => {
  assert.equal(parseParentPid("4242 (celery) S 4100 4242 4100 0 -1"), 4100);
  assert.equal(parseParentPid("77 (a (b) c) R 1 77 77 0 -1"), 1);
  assert.throws(() => parseParentPid("garbage"), SyntaxError);
});

Deno.test("treeRssMb() counts a process and its children", async () => {
  const child = new Deno.Command("sleep", { args: ["5"] }).spawn();
  try {
    assert.ok(processTree(Deno.pid).includes(child.pid));
    const own = parseVmRssKb(Deno.readTextFileSync(`/proc/${Deno.pid}/status`)) / 1024;
    assert.ok(treeRssMb(Deno.pid) > own * 0.9, "the tree holds at least this process");
    assert.ok(treeRssMb(child.pid) > 0);
  } finally {
    child.kill();
    await child.status;
  }
});

Deno.test("finish() stops a peer process that runs past its time and says so", async () => {
  const hung = spawn("sh", ["-c", "echo working; exec sleep 60"]);
  await hung.waitForLine(/^working$/, 5000);
  const started = performance.now();
  await assert.rejects(
    hung.finish("The test client", 300),
    (error: Error) =>
      /^The test client did not finish within 0 s, so it was stopped/.test(error.message) &&
      error.message.includes("working"),
  );
  assert.ok(performance.now() - started < 5000, "finish() waited for the process to end anyway");
  const status = await hung.done;
  assert.equal(status.signal, "SIGTERM");

  const quick = spawn("sh", ["-c", "exit 3"]);
  assert.equal((await quick.finish("The quick client", 10_000)).code, 3);
});

Deno.test("peerClientTimeoutMs() allows a minute plus 5 ms a task and a second a seed run", () => {
  // (9 timed + 1 untimed runs) x 11,000 tasks, and 10 + 1 seed runs.
  assert.equal(peerClientTimeoutMs({ sizes: [1000, 10_000], runs: 9, seedRuns: 10 }), 621_000);
  assert.equal(
    peerClientTimeoutMs({ sizes: [200], runs: 5, seedRuns: 2 }),
    60_000 + 6 * 200 * 5 + 3000,
  );
});

Deno.test("runPeer() rejects sizes, runs and names it cannot use", async () => {
  const options = { sizes: [10], seedRuns: 1, amqpUrl: "amqp://localhost" };
  await assert.rejects(runPeer("bullmq", { ...options, sizes: [] }), RangeError);
  await assert.rejects(runPeer("bullmq", { ...options, sizes: [1.5] }), RangeError);
  await assert.rejects(runPeer("celery", { ...options, seedRuns: 0 }), RangeError);
  await assert.rejects(runPeer("bullmq", { ...options, runs: 0 }), RangeError);
  await assert.rejects(runPeer("rq" as PeerName, options), TypeError);
});

// These start real peers: Redis and Node for BullMQ, Celery and RabbitMQ for
// Celery. CI installs them (.ci/run) and runs these; elsewhere they run when
// asked, as a developer may have neither.
const REAL = Deno.env.get("BENCH_PEERS") === "1" || Deno.env.get("CI") === "true";

for (const name of ["bullmq", "celery"] as const) {
  Deno.test({
    name: `runPeer("${name}") measures sane figures with tiny sizes (in CI, or with BENCH_PEERS=1)`,
    ignore: !REAL,
    async fn() {
      const amqpUrl = defaultAmqpUrl();
      const peer = (await peersAvailable({ amqpUrl })).find((p) => p.name === name)!;
      assert.ok(peer.available, `${name} cannot run here: ${!peer.available && peer.reason}`);
      const figures = await runPeer(name, { sizes: [50], seedRuns: 2, runs: 1, amqpUrl });
      assert.equal(figures.name, name);
      assert.match(figures.version, new RegExp(`^${name} \\d+\\.\\d+`));
      assert.ok(figures.tps["50"] > 0, `tps ${figures.tps["50"]}`);
      assert.equal(figures.seed_samples_ms.length, 2);
      // Each run waits for its 200 ms task: the overhead cannot be far below zero.
      assert.ok(figures.seed_overhead_ms_median > -1, `${figures.seed_overhead_ms_median} ms`);
      assert.ok(figures.seed_overhead_ms_median < 2000, `${figures.seed_overhead_ms_median} ms`);
      assert.ok(figures.idle_rss_mb > 10, `${figures.idle_rss_mb} MB`);
      assert.ok(figures.ready_ms > 0 && figures.ready_ms < 30_000, `${figures.ready_ms} ms`);
      assert.ok(figures.durability.length > 20);
    },
  });
}
