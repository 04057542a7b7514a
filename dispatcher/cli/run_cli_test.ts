import assert from "node:assert/strict";
import { BrokerUnavailableError, MemoryBroker, SecretFileError } from "../../core/broker/mod.ts";
import { WorkersMissingError } from "../../client/workers.ts";
import { ConfigError } from "../../core/config_error.ts";
import { UsageError } from "./options.ts";
import { OutputPathError } from "./output_files.ts";
import { type CliIo, type Command, EXIT, exitCodeOf, runCommand } from "./run_cli.ts";

const OPTIONS = {
  fail: { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** A tool that throws what `--fail` names, at the stage it names, and counts its broker. */
function tool(hub: MemoryBroker, closed: string[]) {
  const errors: Record<string, () => Error> = {
    usage: () => new UsageError("Cannot use --fail: bad"),
    config: () => new ConfigError("Cannot use conf.yml as it has 1 problem"),
    secret: () => new SecretFileError("--password-file", "Cannot read --password-file"),
    output: () => new OutputPathError("--out", "x", "Cannot write --out 'x'"),
    broker: () => new BrokerUnavailableError("Cannot connect to the broker"),
    workers: () => new WorkersMissingError([{ task: "task_a", queue: "queue_a" }], 10),
    bug: () => new TypeError("Cannot read properties of undefined (reading 'x')"),
  };
  const command: Command<typeof OPTIONS, { fail?: string }, { fail?: string }> = {
    name: "tool",
    help: "Usage: deno task tool",
    options: OPTIONS,
    parse: (values) => values,
    prepare: (flags) => Promise.resolve(flags),
    broker: () => ({
      settings: { url: "amqp://u:p@broker:5672" },
      connect: () => {
        const broker = hub.connect("u");
        const close = broker.close.bind(broker);
        broker.close = () => (closed.push("closed"), close());
        return Promise.resolve(broker);
      },
    }),
    run(plan) {
      if (plan.fail) throw errors[plan.fail]();
      return Promise.resolve(EXIT.passed);
    },
  };
  return command;
}

async function run(args: string[]) {
  const hub = new MemoryBroker();
  const closed: string[] = [];
  const err: string[] = [];
  const out: string[] = [];
  const io: CliIo = {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    env: () => undefined,
    color: { out: false, err: false },
  };
  try {
    const code = await runCommand(tool(hub, closed), args, io);
    return { code, out: out.join("\n"), err: err.join("\n"), closed };
  } finally {
    await hub.shutdown();
  }
}

Deno.test("runCommand() maps each error type to its exit code, and closes the broker", async () => {
  const expected: Record<string, number> = {
    usage: 2,
    config: 2,
    secret: 2,
    output: 2,
    broker: 3,
    workers: 3,
  };
  for (const [fail, code] of Object.entries(expected)) {
    const result = await run(["--fail", fail]);
    assert.equal(result.code, code, fail);
    assert.match(result.err, /^Cannot /, fail);
    assert.doesNotMatch(result.err, /Bug|at /, `${fail}: no stack for a known error`);
    assert.deepEqual(result.closed, ["closed"], `${fail}: the broker is closed`);
  }
  const passed = await run([]);
  assert.equal(passed.code, 0);
  assert.deepEqual(passed.closed, ["closed"]);
});

Deno.test("runCommand() reports any other error as a bug, with its stack, and exits 70", async () => {
  const { code, err, closed } = await run(["--fail", "bug"]);
  assert.equal(code, EXIT.bug);
  assert.equal(code, 70);
  assert.match(err, /^Bug: deno task tool stopped on an unexpected error \(exit 70\)/);
  assert.match(err, /TypeError: Cannot read properties of undefined/);
  assert.match(err, /\n\s+at .*run_cli_test\.ts/, "the stack is printed");
  assert.deepEqual(closed, ["closed"]);
});

Deno.test("runCommand() exits 2 on a bad flag and prints --help, before any broker", async () => {
  const bad = await run(["--bogus"]);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /Cannot read the options: .*See 'deno task tool --help'/);
  assert.deepEqual(bad.closed, []);
  const help = await run(["--help"]);
  assert.equal(help.code, 0);
  assert.equal(help.out, "Usage: deno task tool");
  assert.deepEqual(help.closed, []);
});

Deno.test("exitCodeOf() knows only typed errors", () => {
  assert.equal(exitCodeOf(new UsageError("x")), 2);
  assert.equal(exitCodeOf(new BrokerUnavailableError("x")), 3);
  assert.equal(exitCodeOf(new TypeError("x")), undefined);
  assert.equal(exitCodeOf(new Error("x")), undefined);
  assert.equal(exitCodeOf("a string"), undefined);
});
