/**
 * `deno task bench`: measures the product against the limit it can
 * approach, in one run on one broker, and checks the targets of
 * docs/performance.md, "Targets". The limit is a bare amqplib RPC echo with the product's
 * delivery guarantees (bench/bare_echo.ts). The measurements are in
 * `measure.ts`, the document and its targets in `summary.ts`.
 *
 * Exit codes: 0 every target met (or `--quick`), 1 a target missed,
 * 2 bad usage or output path, 3 broker unavailable, 70 a bug.
 *
 * @module
 */

import {
  checkOutputPath,
  type CliIo,
  type Command,
  defaultResultsPath,
  DOCUMENT_OPTIONS,
  EXIT,
  EXIT_HELP_BUG,
  type OptionValues,
  runCommand,
  runMain,
  UsageError,
  wholeNumberFlag,
  writeOutput,
} from "../dispatcher/cli/mod.ts";
import { DEFAULT_BROKER_URL } from "../core/broker/mod.ts";
import { ADMIN_USER } from "../core/contract/users.ts";
import { measure } from "./measure.ts";
import { formatScaleOut, measureScaleOut } from "./scale_out.ts";
import { formatEvents, measureEvents } from "./events.ts";
import { buildDocument, formatBench, missesFail } from "./summary.ts";
import { formatGateway, gatewayBenchAvailable, measureGateway } from "./gateway.ts";

/** The compose stack's user that may create queues: the benchmark makes its own. */

const HELP = `Usage: deno task bench [options]

Measures, in one run on one RabbitMQ:
  - throughput of 1,000 and 10,000 concurrent no-op tasks: the product
    (dispatcher code plus a real worker process) against the limit, a bare
    amqplib RPC echo with the same guarantees (persistent requests, publisher
    confirms, replies confirmed before each ack), both with the same prefetch
    (a timed run of 1,000 is five fan-outs in a row, so it is not all noise),
    with the CPU time per task of the caller, the server and the broker;
  - the seed scenario (task_a 100 ms and task_b 200 ms together): overhead
    = wall time - 200 ms, for the product and the bare echo;
  - each side in an open loop at 50% and 80% of its maximum: p50, p99, max;
    all of the above on each queue type (--queue-types);
  - a worker started with no settings against a tuned one, and a worker
    whose sandbox runs in a process of its own against one in a thread;
  - fan-outs at scale: the client's stream of 1,000,000 calls, deno task
    dispatch of 100,000 tasks with every report, deno task load of 1,000,000
    (each one's peak memory);
  - the dispatcher's memory over its timed runs of 10,000 tasks in one process;
  - a worker's idle memory and its time from start to consuming, as a host
    process and as a container (when Docker is available), and the image size;
  - events: 5,000 (--quick: 300) emitted to three subscribed functions, the
    runs per second, and none lost or run twice, by event id.
Prints tables with the ratios and targets and saves results/bench_<timestamp>.json.

Options:
  --broker URL      RabbitMQ URL of a user that may create queues, such as the
                    host's guest or the compose stack's admin (default:
                    $AMQP_URL, else amqp://${ADMIN_USER}@localhost:5672 when the
                    compose stack's secrets/${ADMIN_USER}.password exists, else
                    ${DEFAULT_BROKER_URL})
  --quick           a short run that checks the benchmark works, not its figures
  --reps N          timed pairs of runs per size, taken in turns after two
                    untimed runs of each side (default: 9; --quick: 2)
  --prefetch N      prefetch and concurrency of both echo and worker (default: 256)
  --no-container    skip the container measurements
  --queue-types LIST queue types of both sides, the main one first: quorum
                    (the product's default), classic, or both (default:
                    quorum,classic; --quick: quorum)
  --scale-out       also measure scale from zero (a task published to a
                    function at zero replicas, one container started: time
                    to its reply) and 1 against 3 replicas of a function
                    (needs Docker; see bench/scale_out.ts)
  --gateway         measure only the HTTP gateway beside the client library
                    (autocannon on Node 20, installed into a cache folder):
                    its p50 overhead one call at a time (target <= 1 ms) and
                    its calls a second at 1,000 at once (target >= 0.8 of the
                    client's); see docs/performance.md
  --peers           also run BullMQ (Node, Redis with AOF, fsync every second
                    and every write) and Celery (prefork, rpc://) on the same
                    shapes, each only when its parts are installed (it says
                    which it skipped)
  --out FILE        save the figures here instead, anywhere: missing folders
                    are made, and the path is checked first
  --no-save         do not save the figures
  --json            print the figures as one JSON document on stdout
  -h, --help        show this help

Exit codes:
  0  every target met (or --quick)
  1  a target missed
  2  bad option or output path
  3  broker unavailable: the benchmark needs RabbitMQ
  ${EXIT_HELP_BUG}`;

const BENCH_OPTIONS = {
  broker: { type: "string" },
  quick: { type: "boolean", default: false },
  reps: { type: "string" },
  prefetch: { type: "string", default: "256" },
  "no-container": { type: "boolean", default: false },
  "queue-types": { type: "string" },
  peers: { type: "boolean", default: false },
  "scale-out": { type: "boolean", default: false },
  gateway: { type: "boolean", default: false },
  ...DOCUMENT_OPTIONS,
} as const;

function parseFlags(values: OptionValues<typeof BENCH_OPTIONS>) {
  const text = values["queue-types"] ?? (values.quick ? "quorum" : "quorum,classic");
  const queueTypes = text.split(",").map((type) => type.trim());
  const known = ["quorum", "classic"];
  if (
    queueTypes.some((type) => !known.includes(type)) ||
    new Set(queueTypes).size !== queueTypes.length
  ) {
    throw new UsageError(
      `Cannot use --queue-types '${text}': list quorum, classic or both, each once, the main one first`,
    );
  }
  return {
    ...values,
    queueTypes: queueTypes as ("quorum" | "classic")[],
    reps: wholeNumberFlag(values.reps, "--reps", values.quick ? 2 : 9),
    prefetch: wholeNumberFlag(values.prefetch, "--prefetch", 256),
  };
}

type BenchFlags = ReturnType<typeof parseFlags>;

const BENCH: Command<typeof BENCH_OPTIONS, BenchFlags, { flags: BenchFlags; out?: string }> = {
  name: "bench",
  help: HELP,
  options: BENCH_OPTIONS,
  parse: parseFlags,
  async prepare(flags) {
    const out = flags["no-save"] ? undefined : flags.out ?? defaultResultsPath("bench", new Date());
    if (out !== undefined) await checkOutputPath(out, "--out");
    return { flags, out };
  },
  broker: ({ flags }) => ({
    settings: { url: flags.broker },
    user: ADMIN_USER,
    connectionName: "bench",
  }),
  unavailable(_plan, _label, _error, { complain }) {
    complain("The benchmark needs RabbitMQ: start it, or pass --broker.");
  },
  async run({ flags, out }, opened, { io }) {
    const say = flags.json ? io.err : io.out;
    // The workers and bench clients are processes of their own: they get the URL.
    const url = opened.target!.url;
    say(
      `Benchmark on ${opened.label}, ${navigator.hardwareConcurrency} cores, prefetch ${flags.prefetch}, ${flags.reps} repetition(s)${
        flags.quick ? " (quick)" : ""
      }`,
    );
    if (flags.gateway) {
      const why = await gatewayBenchAvailable();
      if (why) {
        io.err(`Cannot measure the gateway: ${why}`);
        return EXIT.usage;
      }
      const gateway = await measureGateway({
        url,
        quick: flags.quick,
        admin: opened.broker,
        say,
      });
      for (const line of formatGateway(gateway)) say(line);
      const saved = { kind: "gateway", broker: opened.label, quick: flags.quick, gateway };
      if (flags.json) io.out(JSON.stringify(saved, null, 2));
      if (out !== undefined) {
        await writeOutput(out, JSON.stringify(saved, null, 2) + "\n", "--out");
        say(`Results saved to ${out}`);
      }
      const met = gateway.met.overhead && gateway.met.throughput;
      return met || flags.quick ? EXIT.passed : EXIT.failed;
    }
    const measurements = await measure({
      url,
      admin: opened.broker,
      quick: flags.quick,
      reps: flags.reps,
      prefetch: flags.prefetch,
      container: !flags["no-container"],
      queueTypes: flags.queueTypes,
      peers: flags.peers,
      say,
    });
    const document = buildDocument(measurements, {
      broker: opened.label,
      quick: flags.quick,
      prefetch: flags.prefetch,
      reps: flags.reps,
      queueTypes: flags.queueTypes,
    });
    const { lines, missed } = formatBench(document);
    for (const line of lines) say(line);
    // Events to three functions, counted by id from the workers' side (docs/events.md).
    const events = await measureEvents({ url, admin: opened.broker, quick: flags.quick, say });
    const eventsRow = formatEvents(events);
    for (const line of eventsRow.lines) say(line);
    const scaleOut = flags["scale-out"]
      ? await measureScaleOut({ url, admin: opened.broker, quick: flags.quick, say })
      : undefined;
    if (scaleOut) { for (const line of formatScaleOut(scaleOut)) say(line); }
    const saved = { ...document, events, ...(scaleOut && { scale_out: scaleOut }) };
    if (flags.json) io.out(JSON.stringify(saved, null, 2));
    if (out !== undefined) {
      await writeOutput(out, JSON.stringify(saved, null, 2) + "\n", "--out");
      say(`Results saved to ${out}`);
    }
    // A lost or repeated run is a fault, not a slow figure: it fails even --quick.
    return missesFail(missed, flags.quick) || !eventsRow.held ? EXIT.failed : EXIT.passed;
  },
};

/** Runs the benchmark with `args`; resolves with its exit code. */
export function main(args: string[], io: CliIo): Promise<number> {
  return runCommand(BENCH, args, io);
}

if (import.meta.main) await runMain(BENCH);
