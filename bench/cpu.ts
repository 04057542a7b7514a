/**
 * The CPU time processes used, from /proc (Linux): what each task of a run
 * costs the worker, the caller and the broker, so that a regression shows
 * where it is.
 *
 * @module
 */

import { processTree } from "./peers/_process.ts";
import type { PeerCpu } from "./peers/_types.ts";
import { round } from "./stats.ts";

/** Clock ticks per second of /proc/<pid>/stat's times: 100 on every Linux this runs on. */
const TICKS_PER_SECOND = 100;

/** CPU time (user and system) `pid` has used, in ms; `undefined` once it is gone. */
export function cpuMsOf(pid: number): number | undefined {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  // The fields after the name, which may hold spaces and ")": state is field 3.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return Number.isFinite(ticks) ? ticks * 1000 / TICKS_PER_SECOND : undefined;
}

/** CPU time `pid` and its descendants have used, in ms (a worker and its sandbox's process). */
export function treeCpuMs(pid: number): number | undefined {
  let total: number | undefined;
  for (const member of processTree(pid)) {
    const ms = cpuMsOf(member);
    if (ms !== undefined) total = (total ?? 0) + ms;
  }
  return total;
}

/**
 * The pid of the process of this machine that listens on TCP `port` (the
 * host's RabbitMQ), from /proc/net/tcp and each process's sockets;
 * `undefined` when none does here (a broker elsewhere, or in a container).
 */
export function listenerPid(port: number): number | undefined {
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = Deno.readTextFileSync(table);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const columns = line.trim().split(/\s+/);
      // local_address is HEX_IP:HEX_PORT; state 0A is LISTEN.
      const local = columns[1]?.split(":").at(-1);
      if (local !== undefined && parseInt(local, 16) === port && columns[3] === "0A") {
        inodes.add(columns[9]);
      }
    }
  }
  if (inodes.size === 0) return undefined;
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let fds;
    try {
      fds = [...Deno.readDirSync(`/proc/${entry.name}/fd`)];
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = Deno.readLinkSync(`/proc/${entry.name}/fd/${fd.name}`);
      } catch {
        continue;
      }
      const inode = link.match(/^socket:\[(\d+)\]$/)?.[1];
      if (inode !== undefined && inodes.has(inode)) return Number(entry.name);
    }
  }
  return undefined;
}

/** CPU time of each process of a run, in ms; `null` where it was not measured. */
export interface CpuSnapshot {
  client: number | null;
  server: number | null;
  broker: number | null;
}

/** The pids whose CPU time a run counts: the caller, the server (with its children), the broker. */
export interface CpuPids {
  client?: number;
  server?: number;
  broker?: number;
}

/** What each of `pids` has used so far. */
export function cpuSnapshot(pids: CpuPids): CpuSnapshot {
  const of = (pid: number | undefined, read: (pid: number) => number | undefined) =>
    pid === undefined ? null : read(pid) ?? null;
  return {
    client: of(pids.client, cpuMsOf),
    server: of(pids.server, treeCpuMs),
    broker: of(pids.broker, cpuMsOf),
  };
}

/** CPU time used between two snapshots, in ms per process. */
export function cpuBetween(before: CpuSnapshot, after: CpuSnapshot): CpuSnapshot {
  const diff = (a: number | null, b: number | null) => a === null || b === null ? null : b - a;
  return {
    client: diff(before.client, after.client),
    server: diff(before.server, after.server),
    broker: diff(before.broker, after.broker),
  };
}

/**
 * Counts a peer's CPU time per task between the marks its client writes
 * on stderr around its timed runs at the largest size: `cpu-mark begin`,
 * then `cpu-mark end <tasks>`. `read` snapshots the processes' CPU time.
 */
export function cpuMarks(read: () => CpuSnapshot): {
  onLine: (line: string) => void;
  perTask: () => PeerCpu | undefined;
} {
  let begin: CpuSnapshot | undefined;
  let result: PeerCpu | undefined;
  return {
    onLine(line) {
      const mark = line.match(/^cpu-mark (begin|end)(?: (\d+))?$/);
      if (!mark) return;
      if (mark[1] === "begin") {
        begin = read();
        return;
      }
      const tasks = Number(mark[2]);
      if (begin === undefined || !(tasks > 0)) return;
      const used = cpuBetween(begin, read());
      const per = (ms: number | null) => ms === null ? null : round(ms * 1000 / tasks, 1);
      const parts = {
        client: per(used.client),
        server: per(used.server),
        broker: per(used.broker),
      };
      const known = Object.values(parts).filter((v): v is number => v !== null);
      result = {
        ...parts,
        total: known.length === 0 ? null : round(known.reduce((a, b) => a + b), 1),
      };
    },
    perTask: () => result,
  };
}
