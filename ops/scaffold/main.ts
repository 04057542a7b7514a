/**
 * `deno task new <name>`: adds a function to the project, end to end. It
 * writes `functions/<name>.ts` and `functions/<name>_test.ts`, the
 * function's entry in functions/registry.yaml and a scenario in
 * test-config.yml, then makes the deployment files from the registry with
 * the code of `deno task manifests`. It overwrites nothing: a name or file
 * that exists, or a name the deployments cannot take, stops it before it
 * writes anything.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ConfigError } from "../../core/config_error.ts";
import { DEFAULT_REGISTRY } from "../../core/registry.ts";
import { FUNCTIONS_DIR, generateManifests, projectAt } from "../manifests/generate.ts";
import { writeManifests } from "../manifests/main.ts";
import { addFunction, TEST_CONFIG } from "./add_function.ts";
import { functionModule, functionTest, type NewFunction } from "./templates.ts";

const HELP = `Usage: deno task new <name> [--queue QUEUE] [--trigger PATTERN]... [--emits TYPE]
                       [--schedule CRON [--time-zone ZONE]]

Adds the function <name> to the project: functions/<name>.ts and a test
beside it, its entry in functions/registry.yaml and a scenario in
test-config.yml; then, as 'deno task manifests' does, its worker service,
broker user and password secret in compose.yaml, its worker in
compose.cluster.yaml and stack.yaml, and its Kubernetes manifests under
ops/kubernetes/functions/<name>/.

Options:
  --queue QUEUE      the queue it consumes (default: <name>)
  --trigger PATTERN  run it on each event whose type matches PATTERN, a topic
                     pattern such as order.created or order.* (repeatable;
                     docs/events.md)
  --emits TYPE       emit each result as an event of TYPE, such as order.priced
  --schedule CRON    also run it on this schedule (deno task scheduler fires
                     it; docs/schedules.md): 5 cron fields, or 6 with seconds
                     first, such as "0 */5 * * * *"
  --time-zone ZONE   the IANA time zone the schedule is read in, such as
                     Europe/Berlin (default: UTC)
  -h, --help         show this help

Names are lower_snake_case (a letter, then letters, digits and _; at most
63). Nothing is overwritten: a function or file that exists stops it.

Exit codes:
  0  the function was added
  2  bad name or option, a function or file that exists, or a project file
     that is not as expected
  70 a bug: an unexpected error, printed with its stack to report

Then:
  deno task scheduler --list   (with --schedule: its next ticks)
  deno task dispatch --local --scenario <name>
  docker compose up -d --build && deno task dispatch --scenario <name>`;

/** A mistake of the user's: the tool exits 2. */
class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

function readOptions(args: string[]): NewFunction | "help" {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        queue: { type: "string" },
        trigger: { type: "string", multiple: true },
        emits: { type: "string" },
        schedule: { type: "string" },
        "time-zone": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (error) {
    throw new UsageError(
      `Cannot read the options: ${(error as Error).message}. See 'deno task new --help'`,
    );
  }
  if (parsed.values.help) return "help";
  if (parsed.positionals.length !== 1) {
    throw new UsageError(
      `Cannot add a function without exactly one name (got ${parsed.positionals.length}): run 'deno task new <name>', such as 'deno task new resize_image'`,
    );
  }
  const [name] = parsed.positionals;
  const { trigger, emits, schedule, "time-zone": timeZone } = parsed.values;
  if (timeZone !== undefined && schedule === undefined) {
    throw new UsageError(
      `Cannot use --time-zone without --schedule: give the schedule it is for, such as --schedule "0 3 * * *" --time-zone ${timeZone}`,
    );
  }
  return {
    name,
    queue: parsed.values.queue ?? name,
    ...(trigger?.length && { triggers: trigger }),
    ...(emits !== undefined && { emits }),
    ...(schedule !== undefined && {
      schedule: timeZone === undefined ? { cron: schedule } : { cron: schedule, timeZone },
    }),
  };
}

async function exists(url: URL): Promise<boolean> {
  try {
    await Deno.lstat(url);
    return true;
  } catch {
    return false;
  }
}

/** Adds the function `args` names under `root`; resolves with the exit code. */
export async function main(
  args: string[],
  root: URL = new URL("../../", import.meta.url),
  io: { out: (line: string) => void; err: (line: string) => void } = {
    out: (line) => console.log(line),
    err: (line) => console.error(line),
  },
): Promise<number> {
  try {
    const fn = readOptions(args);
    if (fn === "help") {
      io.out(HELP);
      return 0;
    }
    const project = projectAt(root);
    const read = async (path: string) => {
      const text = await project.read(path);
      if (text === undefined) {
        throw new UsageError(
          `Cannot add a function as ${path} does not exist: run this in the project's root`,
        );
      }
      return text;
    };
    const added = addFunction(await read(DEFAULT_REGISTRY), await read(TEST_CONFIG), fn);
    const created = [
      `functions/${fn.name}.ts`,
      `functions/${fn.name}_test.ts`,
      `${FUNCTIONS_DIR}/${fn.name}`,
    ];
    for (const path of created) {
      if (await exists(new URL(path, root))) {
        throw new UsageError(
          `Cannot create function '${fn.name}' as ${path} exists: choose another name, or remove it first`,
        );
      }
    }
    // Everything the registry makes, in memory first: a name the
    // deployments cannot take stops here, before anything is written.
    await generateManifests(added.registry, project);

    const write = (path: string, text: string, createNew = false) =>
      Deno.writeTextFile(new URL(path, root), text, { createNew });
    await write(created[0], functionModule(fn), true);
    await write(created[1], functionTest(fn), true);
    await write(DEFAULT_REGISTRY, added.registryText);
    await write(TEST_CONFIG, added.testConfigText);
    const { written } = await writeManifests(root);

    io.out(`Added function '${fn.name}' on queue '${fn.queue}':`);
    io.out(`  created  ${created[0]} (the handler: replace it with the function's work)`);
    io.out(`  created  ${created[1]}`);
    io.out(
      `  updated  ${DEFAULT_REGISTRY} (functions.${fn.name}${
        fn.schedule
          ? `, on the schedule ${fn.schedule.cron} (${fn.schedule.timeZone ?? "UTC"})`
          : ""
      })`,
    );
    io.out(`  updated  ${TEST_CONFIG} (scenario ${fn.name})`);
    for (const path of written) io.out(`  wrote    ${path} (deno task manifests)`);
    io.out("Next:");
    io.out(`  deno test functions/${fn.name}_test.ts`);
    if (fn.schedule) io.out("  deno task scheduler --list   (its next ticks)");
    io.out(`  deno task dispatch --local --scenario ${fn.name}`);
    io.out(`  docker compose up -d --build && deno task dispatch --scenario ${fn.name}`);
    io.out("  deno task lock:worker   (if the function imports packages the runtime does not)");
    return 0;
  } catch (error) {
    if (
      error instanceof UsageError || error instanceof TypeError || error instanceof RangeError ||
      error instanceof ConfigError
    ) {
      io.err(`deno task new: ${(error as Error).message}`);
      return 2;
    }
    io.err(
      `Bug: deno task new stopped on an unexpected error (exit 70). Please report it with what follows:\n${
        error instanceof Error ? error.stack : String(error)
      }`,
    );
    return 70;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
