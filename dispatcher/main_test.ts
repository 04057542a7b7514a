import assert from "node:assert/strict";
import { parseXml } from "../tests/_xml.ts";
import { EXIT } from "./cli/run_cli.ts";
import { main } from "./main.ts";
import { DISPATCH_OPTIONS } from "./dispatch_flags.ts";
import type { RunDocument } from "./report/mod.ts";
import { withTempDir } from "../tests/_temp_dir.ts";

/**
 * Runs main() in this process. It saves nothing unless `args` asks
 * (`--out`, or `save: true` for the default path), so that tests leave no
 * files behind.
 */
async function run(
  args: string[],
  env: Record<string, string> = {},
  { save = false, color = false } = {},
) {
  const out: string[] = [];
  const err: string[] = [];
  const saving = save || args.includes("--out") || args.includes("--help") ||
    args.includes("--no-save");
  const code = await main(saving ? args : [...args, "--no-save"], {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    env: (name) => env[name],
    color: { out: color, err: color },
  });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

async function withConfig(text: string, fn: (file: string) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  const file = `${dir}/test-config.yml`;
  await Deno.writeTextFile(file, text);
  try {
    await fn(file);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const FUNCTIONS = `
functions:
  task_a: { queue: queue_a }
  task_b: { queue: queue_b }
`;

Deno.test("main() --local runs the default scenario on the embedded broker and passes", async () => {
  const { code, out } = await run(["--local"]);
  assert.equal(code, EXIT.passed, out);
  const lines = out.split("\n");
  assert.match(lines[0], /^Loaded config: Distributed task system demo \(test-config\.yml\)$/);
  assert.ok(lines.includes("Expected workers: 2"));
  assert.ok(lines.includes("Dispatching tasks..."));
  const active = lines.indexOf("Active workers: 2");
  assert.ok(active > 0 && active < lines.indexOf("Dispatching tasks..."), out);
  assert.match(
    lines[active + 1],
    /^ {2}task_a@embedded \(task_a on queue_a, up \d+s, 0 tasks done/,
  );
  assert.match(lines[active + 2], /^ {2}task_b@embedded \(task_b on queue_b, /);
  for (const state of ["SENT", "STARTED", "SUCCESS"]) {
    for (const task of ["task_a", "task_b"]) {
      assert.match(out, new RegExp(`^\\[\\d\\d:\\d\\d:\\d\\d\\.\\d{3}\\] ${state} +${task} `, "m"));
    }
  }
  assert.match(out, /^Successful: 2, failed: 0 \(0 errors, 0 timed out\)$/m);
  assert.match(
    out,
    /^Execution time: average \d\.\d{3} s, fastest \d\.\d{3} s \(task_a\), slowest/m,
  );
  const seconds = (pattern: RegExp) => Number(out.match(pattern)?.[1]);
  const a = seconds(
    /Result from task_a: Hello from Task A \((\d+\.\d{3}) s, attempts: 1, worker: task_a@embedded\)/,
  );
  const b = seconds(
    /Result from task_b: Hello from Task B \((\d+\.\d{3}) s, attempts: 1, worker: task_b@embedded\)/,
  );
  assert.ok(a >= 0.1 && b >= 0.2, `execution times ${a} and ${b} cover work_ms`);
  const wall = seconds(/Total wall time: (\d+\.\d{3}) s; sum of task times: \d+\.\d{3} s/);
  const sum = seconds(/sum of task times: (\d+\.\d{3}) s/);
  assert.ok(Math.abs(sum - (a + b)) < 0.002, "the sum is of the task times");
  assert.ok(wall < sum, `tasks ran concurrently: wall ${wall} s, sum ${sum} s`);
  assert.match(out, /Task A retries: 0\nTask B retries: 0\nTotal retries: 0/);
  assert.match(out, /Passed: 2\/2/);
});

Deno.test("main() reports retries and an expected failure after exhausted retries", async () => {
  const recovered = await run(["--local", "--scenario", "recovers_after_retries"]);
  assert.equal(recovered.code, EXIT.passed, recovered.out);
  assert.match(recovered.out, /attempts: 3/);
  assert.match(recovered.out, /Task A retries: 2\nTotal retries: 2/);
  const exhausted = await run(["--local", "--scenario", "exhausts_retries"]);
  assert.equal(exhausted.code, EXIT.passed, exhausted.out);
  assert.match(exhausted.out, /Error from task_b: SimulatedFailure: .*attempts: 2/);
});

Deno.test("main() exits 1 when a reply does not meet its expectation", async () => {
  await withConfig(
    `${FUNCTIONS}
scenarios:
  wrong:
    tasks:
      - task: task_a
        payload: { work_ms: 0 }
        expect: { result: Hello from somewhere else }
`,
    async (file) => {
      const { code, out } = await run(["--local", "--config", file]);
      assert.equal(code, EXIT.failed);
      assert.match(
        out,
        /FAILED: expected result "Hello from somewhere else", got "Hello from Task A"/,
      );
      assert.match(out, /Passed: 0\/1 \(1 failed\)/);
    },
  );
});

Deno.test("main() reports a TIMEOUT per task and exits 1", async () => {
  await withConfig(
    `${FUNCTIONS}
scenarios:
  slow:
    tasks:
      - task: task_a
        payload: { work_ms: 2000 }
        timeout_ms: 50
      - task: task_b
        payload: { work_ms: 0 }
`,
    async (file) => {
      const { code, out } = await run(["--local", "--config", file]);
      assert.equal(code, EXIT.failed);
      assert.match(out, /TIMEOUT task_a: no reply within 50 ms/);
      assert.match(out, /Result from task_b: Hello from Task B/);
      assert.match(out, /Passed: 1\/2 \(1 failed, 1 timed out\)/);
    },
  );
});

Deno.test("main() exits 2 with file, line and fix for a bad configuration", async () => {
  await withConfig(
    `${FUNCTIONS}
scenarios:
  basic:
    tasks:
      - task: task_c
`,
    async (file) => {
      const { code, err, out } = await run(["--local", "--config", file]);
      assert.equal(code, EXIT.usage);
      assert.equal(out, "");
      assert.ok(err.includes(`${file}:9:15: scenarios.basic.tasks[0].task:`), err);
      assert.match(
        err,
        /'task_c' is not a function of this file or its registry: use one of task_a, task_b/,
      );
    },
  );
  const missing = await run(["--config", "/nonexistent/test-config.yml"]);
  assert.equal(missing.code, EXIT.usage);
  assert.match(missing.err, /does not exist/);
});

Deno.test("main() exits 2 for bad flags and unknown scenarios", async () => {
  for (
    const args of [
      ["--bogus"],
      ["--local", "--broker", "amqp://localhost"],
      ["--local", "--ca-file", "ca.pem"],
      ["--wait-workers", "soon"],
      ["--timeout-ms", "-1"],
      ["--log-level", "loud"],
      ["--log-format", "xml"],
      ["--out", "results/x.json", "--no-save"],
      ["--junit", ""],
      ["--scenario", "nope"],
    ]
  ) {
    const { code, err } = await run(args);
    assert.equal(code, EXIT.usage, args.join(" "));
    assert.ok(err.length > 10, `explains ${args.join(" ")}`);
  }
});

Deno.test("main() --help documents every flag", async () => {
  const { code, out } = await run(["--help"]);
  assert.equal(code, EXIT.passed);
  const flags = Object.keys(DISPATCH_OPTIONS);
  assert.ok(flags.length >= 8, `found flags ${flags}`);
  for (const flag of flags) assert.ok(out.includes(`--${flag}`), `--help lacks --${flag}`);
});

Deno.test("main() --list shows the scenarios and marks the default", async () => {
  const { code, out } = await run(["--list"]);
  assert.equal(code, EXIT.passed);
  assert.match(out, /^basic \(default\): 2 tasks\./m);
  assert.match(out, /^burst: 40 tasks\./m);
});

Deno.test("main() fails within 5 s when an explicit broker does not answer", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  // Its retries and this 5 s timer share one event loop, where timers fire in
  // the order of their deadlines: load delays both alike.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const fiveSeconds = new Promise<"5 s passed">((resolve) => {
    timer = setTimeout(() => resolve("5 s passed"), 5000);
  });
  const dispatch = run([], { AMQP_URL: `amqp://guest:secret@127.0.0.1:${port}` });
  const first = await Promise.race([dispatch, fiveSeconds]).finally(() => clearTimeout(timer));
  assert.notEqual(first, "5 s passed", "gave up within 5 s");
  const { code, err } = await dispatch;
  assert.equal(code, EXIT.unavailable);
  assert.match(
    err,
    new RegExp(`Cannot connect to the broker at amqp://guest:\\*\\*\\*@127\\.0\\.0\\.1:${port}`),
  );
  assert.ok(!err.includes("secret"), "the password is masked");
});

Deno.test("main() exits 2 naming a password or TLS file it cannot use, before connecting", async () => {
  const cases: [string[], Record<string, string>, RegExp][] = [
    [
      ["--broker", "amqp://dispatcher@127.0.0.1:1", "--password-file", "/nonexistent/pw"],
      {},
      /^Cannot read --password-file as '\/nonexistent\/pw' does not exist: create it, or set --password-file to the file that holds it$/,
    ],
    [
      [],
      { AMQP_URL: "amqps://u:s3cret@127.0.0.1:1", AMQP_CA_FILE: "/nonexistent/ca.pem" },
      /^Cannot read AMQP_CA_FILE as '\/nonexistent\/ca\.pem' does not exist/,
    ],
    [
      ["--broker", "amqp://u:s3cret@127.0.0.1:1", "--cert-file", "cert.pem"],
      {},
      /^Cannot use --cert-file with 'amqp:\/\/u:\*\*\*@127\.0\.0\.1:1' as that connection is not encrypted/,
    ],
  ];
  for (const [args, env, pattern] of cases) {
    const { code, err } = await run(args, env);
    assert.equal(code, EXIT.usage, err);
    assert.match(err, pattern);
    assert.ok(!err.includes("s3cret"), "the password is masked");
  }
});

const MIXED = `${FUNCTIONS}
scenarios:
  mixed:
    tasks:
      - { task: task_a, payload: { work_ms: 10 }, expect: { result: Hello from Task A } }
      - task: task_b
        retries: 1
        backoff: { base_delay_ms: 1 }
        payload: { fail_attempts: 5, work_ms: 0 }
        expect: { result: Hello from Task B }
`;

Deno.test("main() --json prints only the run's JSON document on stdout", async () => {
  await withConfig(MIXED, async (file) => {
    const { code, out, err } = await run(["--local", "--config", file, "--json"]);
    assert.equal(code, EXIT.failed);
    const document: RunDocument = JSON.parse(out);
    assert.equal(document.exit_code, 1);
    assert.equal(document.scenario.name, "mixed");
    assert.deepEqual(document.workers.map((w) => w.worker), ["task_a@embedded", "task_b@embedded"]);
    assert.equal(document.summary.total, 2);
    assert.equal(document.summary.passed, 1);
    assert.equal(document.summary.errors, 1);
    assert.deepEqual(document.summary.retries, { task_a: 0, task_b: 1 });
    const [a, b] = document.tasks;
    assert.equal(a.status, "success");
    assert.equal(a.result, "Hello from Task A");
    assert.ok(a.duration_ms! >= 10);
    assert.ok(a.queue_wait_ms! >= 0 && a.queue_wait_ms! < 1000);
    assert.ok(Date.parse(a.started_at!) >= Date.parse(a.sent_at));
    assert.equal(b.status, "error");
    assert.equal(b.error?.type, "SimulatedFailure");
    assert.equal(b.attempts, 2);
    assert.deepEqual(b.timeline.map((t) => [t.attempt, t.outcome]), [[1, "retry"], [2, "error"]]);
    // Everything for people went to stderr instead.
    assert.match(err, /^Loaded config: /m);
    assert.match(err, /\] RETRY 1\/1 +task_b +SimulatedFailure/);
    assert.match(err, /^Passed: 1\/2 \(1 failed\)$/m);
  });
});

Deno.test("main() --quiet prints only the summary", async () => {
  const { code, out } = await run(["--local", "--quiet"]);
  assert.equal(code, EXIT.passed);
  assert.doesNotMatch(out, /Loaded config|Active workers|Dispatching|\] (SENT|STARTED|SUCCESS) /);
  assert.match(out, /^Successful: 2, failed: 0/);
  assert.match(out, /^Result from task_a: Hello from Task A/m);
  assert.match(out, /^Passed: 2\/2$/m);
});

Deno.test("main() saves the JSON document, JUnit XML and HTML report where asked", async () => {
  await withConfig(MIXED, (file) =>
    withTempDir(async (dir) => {
      const paths = {
        out: `${dir}/run.json`,
        junit: `${dir}/sub/junit.xml`,
        html: `${dir}/r.html`,
      };
      const { code, out } = await run([
        "--local",
        "--config",
        file,
        "--out",
        paths.out,
        "--junit",
        paths.junit,
        "--html",
        paths.html,
      ]);
      assert.equal(code, EXIT.failed);
      assert.match(out, new RegExp(`^Results saved to ${paths.out}$`, "m"));
      assert.match(out, new RegExp(`^JUnit XML saved to ${paths.junit}$`, "m"));
      assert.match(out, new RegExp(`^HTML report saved to ${paths.html}$`, "m"));
      const document: RunDocument = JSON.parse(await Deno.readTextFile(paths.out));
      assert.equal(document.tasks.length, 2);
      const junit = parseXml(await Deno.readTextFile(paths.junit));
      const suite = junit.children[0];
      assert.equal(suite.attributes.name, "mixed");
      assert.equal(suite.attributes.failures, "1");
      const cases = suite.children.filter((c) => c.name === "testcase");
      assert.deepEqual(
        cases.map((c) => c.children.some((x) => x.name === "failure")),
        [false, true],
      );
      const html = await Deno.readTextFile(paths.html);
      for (const task of document.tasks) assert.ok(html.includes(task.task_id), task.label);
    }));
});

/** A registry in which demo.greet runs task_a, whose result runs task_b, and scenarios of events. */
const EVENTS_REGISTRY = `
functions:
  task_a: { queue: queue_a, triggers: [demo.greet], emits: demo.greeted }
  task_b: { queue: queue_b, triggers: [demo.greeted] }
events:
  emitters:
    dispatcher: ["demo.#"]
`;
const EVENTS_CONFIG = `
registry: registry.yaml
default_scenario: greet
scenarios:
  greet:
    events:
      - emit: demo.greet
        data: { work_ms: 1 }
        expect_runs: [{ function: task_a }, { function: task_b }]
  wrong:
    tasks:
      - { task: task_b, payload: { work_ms: 1 } }
    events:
      - emit: demo.greet
        data: { work_ms: 1 }
        expect_runs: [{ function: task_a }, { function: task_b, status: error }]
`;

Deno.test("main() puts the events' verdicts in the JSON document, JUnit XML and HTML report, and its exit code", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/registry.yaml`, EVENTS_REGISTRY);
    await Deno.writeTextFile(`${dir}/test-config.yml`, EVENTS_CONFIG);
    const files = (
      name: string,
    ) => [
      "--out",
      `${dir}/${name}.json`,
      "--junit",
      `${dir}/${name}.xml`,
      "--html",
      `${dir}/${name}.html`,
    ];
    const read = async (name: string) => ({
      document: JSON.parse(await Deno.readTextFile(`${dir}/${name}.json`)) as RunDocument,
      suite: parseXml(await Deno.readTextFile(`${dir}/${name}.xml`)).children[0],
      html: await Deno.readTextFile(`${dir}/${name}.html`),
    });
    const config = ["--local", "--config", `${dir}/test-config.yml`];

    // Events alone, passing: the files are written, as for tasks.
    const greet = await run([...config, "--scenario", "greet", ...files("greet")]);
    assert.equal(greet.code, EXIT.passed, greet.out + greet.err);
    assert.match(greet.out, /^Events passed: 1\/1$/m);
    const passed = await read("greet");
    assert.equal(passed.document.exit_code, 0);
    assert.deepEqual(passed.document.summary.events, { total: 1, passed: 1, failed: 0 });
    assert.equal(passed.document.tasks.length, 0);
    const [event] = passed.document.events;
    assert.ok(event.id && greet.out.includes(`EMITTED   demo.greet as ${event.id}`), greet.out);
    assert.deepEqual(event.expected_runs.map((r) => [r.function, r.status, r.passed]), [
      ["task_a", "success", true],
      ["task_b", "success", true],
    ]);
    assert.notEqual(event.expected_runs[1].event_id, event.id, "task_b ran down the chain");
    assert.deepEqual(
      [passed.suite.attributes.tests, passed.suite.attributes.failures],
      ["1", "0"],
    );
    assert.match(passed.html, /class="verdict pass">Passed 1\/1 events</);

    // Tasks that pass and an event that does not: the run fails, in every file.
    const wrong = await run([...config, "--scenario", "wrong", ...files("wrong")]);
    assert.equal(wrong.code, EXIT.failed, wrong.out);
    const failedLine = wrong.out.split("\n").find((line) => line.endsWith(": FAILED"));
    assert.match(failedLine ?? "", /task_b expected to end in error, ended in success: FAILED$/);
    assert.match(wrong.out, /^Passed: 1\/1$/m);
    const failed = await read("wrong");
    assert.equal(failed.document.exit_code, 1);
    assert.equal(failed.document.summary.failed, 0);
    assert.deepEqual(failed.document.summary.events, { total: 1, passed: 0, failed: 1 });
    const [bad] = failed.document.events;
    assert.equal(bad.passed, false);
    assert.ok(failedLine!.endsWith(`${bad.problem}: FAILED`), `${failedLine} / ${bad.problem}`);
    assert.deepEqual(
      [
        failed.suite.attributes.tests,
        failed.suite.attributes.failures,
        failed.suite.attributes.errors,
      ],
      ["2", "1", "0"],
    );
    const [eventCase] = failed.suite.children.filter((c) => c.name === "testcase");
    assert.equal(eventCase.attributes.name, "demo.greet");
    const failure = eventCase.children.find((c) => c.name === "failure");
    assert.equal(failure?.attributes.message, bad.problem);
    assert.match(failed.html, /class="verdict fail">Failed 1\/1 tasks, 0\/1 events</);
    assert.ok(failed.html.includes(`<span title="${bad.problem}">failed</span>`));
  });
});

Deno.test("main() saves to results/dispatch_<timestamp>.json unless --no-save", async () => {
  const { code, out } = await run(["--local"], {}, { save: true });
  assert.equal(code, EXIT.passed);
  const path = out.match(/^Results saved to (results\/dispatch_\S+\.json)$/m)?.[1];
  assert.ok(path, out);
  assert.match(path, /^results\/dispatch_\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}Z\.json$/);
  try {
    const document: RunDocument = JSON.parse(await Deno.readTextFile(path));
    assert.equal(document.summary.passed, 2);
  } finally {
    await Deno.remove(path);
  }
  const unsaved = await run(["--local", "--no-save"]);
  assert.doesNotMatch(unsaved.out, /saved to/);
});

Deno.test("main() --log-format json writes only JSON lines on stderr, one per task event", async () => {
  await withConfig(MIXED, async (file) => {
    const { out, err } = await run([
      "--local",
      "--config",
      file,
      "--json",
      "--log-level",
      "info",
      "--log-format",
      "json",
    ]);
    const document: RunDocument = JSON.parse(out);
    const entries = err.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line));
    const ids = new Set(document.tasks.map((t) => t.task_id));
    const mine = entries.filter((e) => e.component === "dispatcher");
    for (const entry of mine) {
      assert.ok(entry.ts && entry.level && entry.msg, JSON.stringify(entry));
    }
    for (const msg of ["Task sent", "Task started", "Task finished"]) {
      const logged = new Set(mine.filter((e) => e.msg === msg).map((e) => e.task_id));
      assert.deepEqual(logged, ids, msg);
    }
    const retry = mine.find((e) => e.msg === "Task retrying");
    assert.equal(retry.task, "task_b");
    assert.equal(retry.error_type, "SimulatedFailure");
    const finished = mine.find((e) => e.msg === "Task finished" && e.task === "task_b");
    assert.equal(finished.level, "warn");
    assert.equal(finished.attempt, 2);
    assert.equal(finished.worker, "task_b@embedded");
    assert.equal(typeof finished.duration_ms, "number");
  });
});

Deno.test("main() with --log-format json reports a bad configuration as a JSON line", async () => {
  const { code, err } = await run(["--config", "/nonexistent.yml", "--log-format", "json"]);
  assert.equal(code, EXIT.usage);
  const entry = JSON.parse(err);
  assert.equal(entry.level, "error");
  assert.match(entry.msg, /Cannot read \/nonexistent\.yml/);
});
