/**
 * Runs one peer alone and prints its figures as JSON, for debugging:
 *
 *   deno run -A bench/peers/main.ts bullmq --sizes 1000,10000
 *   deno run -A bench/peers/main.ts celery --seed-runs 10 --broker amqp://...
 *   deno run -A bench/peers/main.ts --check
 *
 * Exit codes: 0 done, 1 the peer failed, 2 bad usage, 3 the peer cannot run here.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { defaultAmqpUrl, type PeerName, PEERS, peersAvailable, runPeer } from "./mod.ts";

const HELP = `Usage: deno run -A bench/peers/main.ts <${PEERS.join("|")}> [options]
       deno run -A bench/peers/main.ts --check

Options:
  --sizes LIST      tasks sent at once per measurement (default: 1000,10000)
  --runs N          timed runs per size, after one untimed run (default: 5)
  --seed-runs N     repetitions of the seed scenario (default: 10)
  --open-loop-ms MS how long each open loop runs, at 50% and 80% of the
                    throughput at the largest size (default: 0, none)
  --broker URL      RabbitMQ for Celery (default: $AMQP_URL, else localhost)
  --check           only say which peers can run here, and what is missing
  -h, --help        show this help`;

function wholeNumbers(text: string, flag: string): number[] {
  const numbers = text.split(",").map(Number);
  if (!numbers.every((n) => Number.isInteger(n) && n > 0)) {
    throw new RangeError(`Cannot read ${flag}: '${text}' is not a list of positive whole numbers`);
  }
  return numbers;
}

async function main(args: string[]): Promise<number> {
  let values, positionals;
  try {
    ({ values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        sizes: { type: "string", default: "1000,10000" },
        runs: { type: "string", default: "5" },
        "seed-runs": { type: "string", default: "10" },
        "open-loop-ms": { type: "string", default: "0" },
        broker: { type: "string" },
        check: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const amqpUrl = values.broker ?? defaultAmqpUrl();
  const availability = await peersAvailable({ amqpUrl });
  if (values.check) {
    console.log(JSON.stringify(availability, null, 2));
    return availability.every((peer) => peer.available) ? 0 : 3;
  }
  const name = positionals[0] as PeerName;
  if (positionals.length !== 1 || !PEERS.includes(name)) {
    console.error(HELP);
    return 2;
  }
  let options;
  try {
    options = {
      sizes: wholeNumbers(values.sizes, "--sizes"),
      runs: wholeNumbers(values.runs, "--runs")[0],
      seedRuns: wholeNumbers(values["seed-runs"], "--seed-runs")[0],
      openLoopMs: values["open-loop-ms"] === "0"
        ? 0
        : wholeNumbers(values["open-loop-ms"], "--open-loop-ms")[0],
    };
  } catch (error) {
    console.error((error as Error).message);
    return 2;
  }
  const peer = availability.find((p) => p.name === name)!;
  if (!peer.available) {
    console.error(`Cannot run ${name}: ${peer.reason}`);
    return 3;
  }
  const abort = new AbortController();
  const stop = () => abort.abort(new Error("Interrupted"));
  Deno.addSignalListener("SIGINT", stop);
  try {
    const figures = await runPeer(name, {
      ...options,
      amqpUrl,
      log: (line) => console.error(line),
      signal: abort.signal,
    });
    console.log(JSON.stringify(figures, null, 2));
    return 0;
  } catch (error) {
    console.error(`Cannot measure ${name}: ${(error as Error).message}`);
    return 1;
  } finally {
    Deno.removeSignalListener("SIGINT", stop);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
