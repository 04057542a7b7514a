/**
 * Pure helpers of the peers: the figures from a client's output,
 * versions and /proc texts.
 *
 * @module
 */

import { median, round } from "../stats.ts";
import type { PeerOpenLoop } from "./_types.ts";

/** What a peer's client prints as the last line of its stdout. */
export interface ClientFigures {
  /** Tasks per second of each timed run, by size. */
  tps: Record<string, number[]>;
  /** Wall time of each seed run, in milliseconds. */
  seed_ms: number[];
  /** Versions the client saw, when it reports them. */
  versions?: Record<string, string>;
  /** Each open loop, by share of the maximum ("50", "80"), when it ran them. */
  open?: Record<string, PeerOpenLoop>;
}

const isNumbers = (value: unknown): value is number[] =>
  Array.isArray(value) && value.every((n) => typeof n === "number" && Number.isFinite(n));

/** Parses and checks the JSON line that ends a peer client's stdout. */
export function parseClientOutput(stdout: string): ClientFigures {
  const last = stdout.trim().split("\n").at(-1) ?? "";
  let figures;
  try {
    figures = JSON.parse(last);
  } catch {
    throw new SyntaxError(`Cannot read the figures of a peer client: last line is '${last}'`);
  }
  const valid = typeof figures === "object" && figures !== null &&
    typeof figures.tps === "object" && figures.tps !== null &&
    Object.values(figures.tps).every(isNumbers) && isNumbers(figures.seed_ms);
  if (!valid) throw new SyntaxError(`Cannot read the figures of a peer client: got '${last}'`);
  return figures;
}

/** The major version of a `node --version` answer such as "v20.20.2", or NaN. */
export function nodeMajor(text: string): number {
  return Number(text.trim().match(/^v(\d+)\./)?.[1] ?? NaN);
}

/** The version in a `redis-server --version` answer ("Redis server v=7.0.15 sha=..."). */
export function redisVersion(text: string): string | undefined {
  return text.match(/\bv=(\d+\.\d+\.\d+)/)?.[1];
}

/** The resident set size in kB of a /proc/<pid>/status text; 0 when it has none (a zombie). */
export function parseVmRssKb(status: string): number {
  const kb = status.match(/^VmRSS:\s+(\d+) kB$/m)?.[1];
  return kb === undefined ? 0 : Number(kb);
}

/** The parent pid of a /proc/<pid>/stat text, whose command name may hold spaces and ")". */
export function parseParentPid(stat: string): number {
  // The fields after the name: state, ppid, ...
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ppid = Number(fields[1]);
  if (!Number.isInteger(ppid)) throw new SyntaxError(`Cannot read a parent pid: got '${stat}'`);
  return ppid;
}

/** The seed scenario's longest task: its overhead is the wall time beyond it. */
export const SEED_LONGEST_MS = 200;

/** The summary figures of a client's samples: medians by size, and the seed overhead. */
export function summarize(client: ClientFigures): {
  tps: Record<string, number>;
  tps_samples: Record<string, number[]>;
  seed_overhead_ms_median: number;
  seed_samples_ms: number[];
  open?: Record<string, PeerOpenLoop>;
} {
  const tps: Record<string, number> = {};
  const samples: Record<string, number[]> = {};
  for (const [size, values] of Object.entries(client.tps)) {
    tps[size] = round(median(values));
    samples[size] = values.map((value) => round(value));
  }
  const open = client.open && Object.fromEntries(
    Object.entries(client.open).map(([load, s]) => [load, {
      rate: Math.round(s.rate),
      sent: s.sent,
      tps: round(s.tps),
      p50: round(s.p50, 2),
      p99: round(s.p99, 2),
      max: round(s.max, 2),
    }]),
  );
  return {
    tps,
    tps_samples: samples,
    seed_overhead_ms_median: round(median(client.seed_ms) - SEED_LONGEST_MS, 2),
    seed_samples_ms: client.seed_ms.map((ms) => round(ms, 2)),
    ...(open && { open }),
  };
}
