/**
 * `deno task dispatch --local` as a user runs it, in a copy of the
 * repository whose functions/ holds the escape fixture and whose secrets/
 * holds a canary administrator password: the tool may read every file, its
 * function may read none outside functions/ (review F1).
 */

import assert from "node:assert/strict";
import { CANARY_SECRET, writeCanary } from "./fixtures/canary.ts";
import { copyRepository } from "./_repository.ts";

const ROOT = new URL("../", import.meta.url);
const decoder = new TextDecoder();

/** Runs `cmd` in `cwd`, killed if it outlives `timeoutMs`. */
async function run(cmd: string, args: string[], cwd: string, timeoutMs = 120_000) {
  const output = await new Deno.Command(cmd, {
    args,
    cwd,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** The fixture's imports that reach outside functions/ in a project. */
const TARGETS = [
  "text ../secrets/admin.password",
  "json ../deno.json",
  "code ../tests/_helpers.ts",
  "text /etc/passwd",
  "text canary",
  "json canary",
];

const CONFIG = `name: escape
default_scenario: imports
functions:
  escape: { queue: queue_escape }
scenarios:
  imports:
    description: imports of files outside the function's folder, and what its module got
    tasks:
${
  TARGETS.map((target) =>
    `      - { task: escape, payload: { attempt: import, target: "${target}" }, retries: 2, expect: { status: error } }`
  ).join("\n")
}
      - { task: escape, payload: { attempt: top-level-imports } }
`;

Deno.test("deno task dispatch --local runs a function that can import no file outside functions/, though the tool may read them all", async () => {
  await writeCanary();
  const dir = await copyRepository();
  try {
    await Deno.copyFile(
      new URL("fixtures/functions/escape.ts", import.meta.url),
      `${dir}/functions/escape.ts`,
    );
    await Deno.mkdir(`${dir}/secrets`, { recursive: true, mode: 0o700 });
    await Deno.writeTextFile(`${dir}/secrets/admin.password`, `${CANARY_SECRET}\n`, {
      mode: 0o600,
    });
    await Deno.writeTextFile(`${dir}/escape-config.yml`, CONFIG);
    const dispatched = await run(
      Deno.execPath(),
      ["task", "dispatch", "--local", "--config", "escape-config.yml", "--json", "--no-save"],
      dir,
    );
    const all = dispatched.stdout + dispatched.stderr;
    assert.equal(dispatched.code, 0, all);
    assert.ok(!all.includes(CANARY_SECRET), "no canary in the tool's output");
    assert.ok(!all.includes("root:x:0:0"), "no /etc/passwd in the tool's output");
    const document = JSON.parse(dispatched.stdout) as {
      broker: string;
      tasks: {
        status: string;
        error: { type: string; message: string } | null;
        result: unknown;
        attempts: number;
      }[];
    };
    assert.match(document.broker, /process of its own/);
    const imports = document.tasks.slice(0, TARGETS.length);
    for (const [index, task] of imports.entries()) {
      assert.equal(task.status, "error", TARGETS[index]);
      assert.match(task.error!.message, /^Requires read access to /, TARGETS[index]);
      assert.equal(task.attempts, 1, `${TARGETS[index]}: a denial is not retried`);
    }
    const top = document.tasks[TARGETS.length].result as Record<string, string>;
    for (const target of TARGETS) {
      assert.match(top[target], /^TypeError: Requires read access to /, target);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the embedded mode refuses to start in a tool that may not run deno, naming the flag", async () => {
  const refused = await run(
    Deno.execPath(),
    [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      "--allow-write",
      "--allow-sys=hostname",
      "dispatcher/main.ts",
      "--local",
      "--no-save",
    ],
    ROOT.pathname,
  );
  assert.equal(refused.code, 2, refused.stdout + refused.stderr);
  assert.match(refused.stderr, /may not run deno: add --allow-run=deno/);
  assert.doesNotMatch(refused.stdout, /Passed/);
});
