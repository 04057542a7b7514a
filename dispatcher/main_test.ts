import assert from "node:assert/strict";
import { EXIT, main } from "./main.ts";

async function run(args: string[], env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    env: (name) => env[name],
    color: false,
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
      assert.match(err, /'task_c' is not a function of this file: use one of task_a, task_b/);
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
  const source = await Deno.readTextFile(new URL("./main.ts", import.meta.url));
  const options = source.slice(source.indexOf("options: {"), source.indexOf("},\n    });"));
  const flags = [...options.matchAll(/^\s+"?([a-z-]+)"?: \{ type:/gm)].map((m) => m[1]);
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
  const started = Date.now();
  const { code, err } = await run([], { AMQP_URL: `amqp://guest:secret@127.0.0.1:${port}` });
  assert.equal(code, EXIT.unavailable);
  assert.ok(Date.now() - started < 5000);
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
