/**
 * Helpers for the tests of compose.cluster.yaml: RabbitMQ's management API
 * of a node, the membership of quorum queues, a load run that a test can
 * interrupt, and the workers' own account of what they ran.
 *
 * @module
 */

import { readSecret } from "./_docker.ts";
import type { Stack } from "./_compose.ts";
import { waitFor } from "./_helpers.ts";
import { DeadlineError, killGroup, withDeadline } from "./_command.ts";

const ROOT = new URL("../", import.meta.url);

/** The node names of compose.cluster.yaml, in the order of its services. */
export const NODES = ["rabbit@rabbitmq", "rabbit@rabbitmq-2", "rabbit@rabbitmq-3"];

/** The services of the three nodes. */
export const NODE_SERVICES = ["rabbitmq", "rabbitmq-2", "rabbitmq-3"];

/** A queue as the management API lists it (the fields read here). */
export interface ApiQueue {
  name: string;
  type: string;
  members?: string[];
  online?: string[];
  leader?: string;
}

/** Calls the management API of node `node` (0 to 2) as the administrator. */
export async function managementApi<T>(stack: Stack, node: number, path: string): Promise<T> {
  const password = await readSecret(`${stack.secretsDir}/admin.password`);
  const response = await fetch(
    `http://127.0.0.1:${stack.nodes[node].managementPort}/api${path}`,
    { headers: { authorization: `Basic ${btoa(`admin:${password}`)}` } },
  );
  if (!response.ok) {
    await response.body?.cancel();
    throw new Error(`GET /api${path} on node ${node + 1} answered ${response.status}`);
  }
  return await response.json() as T;
}

/** Every queue of the vhost, from node `node`. */
export function listQueues(stack: Stack, node: number): Promise<ApiQueue[]> {
  return managementApi<ApiQueue[]>(
    stack,
    node,
    "/queues/%2F?columns=name,type,members,online,leader",
  );
}

/** Messages acknowledged in the whole cluster so far, as node `node` counts them. */
export async function acknowledged(stack: Stack, node: number): Promise<number> {
  const overview = await managementApi<{ message_stats?: { ack?: number } }>(
    stack,
    node,
    "/overview",
  );
  return overview.message_stats?.ack ?? 0;
}

/**
 * Waits until each of `queues` is a quorum queue with a member on every
 * node, all of them online: after a node comes back, its members catch up.
 */
export async function waitForFullMembership(
  stack: Stack,
  queues: string[],
  node: number,
  timeoutMs = 90_000,
): Promise<ApiQueue[]> {
  let last: ApiQueue[] = [];
  await waitFor(
    async () => {
      last = await listQueues(stack, node).catch(() => []);
      return queues.every((name) => {
        const queue = last.find((q) => q.name === name);
        return queue?.type === "quorum" && queue.members?.length === NODES.length &&
          queue.online?.length === NODES.length;
      });
    },
    `every node online in the members of ${queues.join(", ")}`,
    timeoutMs,
    500,
  ).catch((error) => {
    const seen = last.filter((q) => queues.includes(q.name)).map((q) =>
      `${q.name}: ${q.type}, members ${q.members?.join(" ")}, online ${q.online?.join(" ")}`
    );
    throw new Error(`${(error as Error).message}\n${seen.join("\n")}`);
  });
  return last;
}

/** A `deno task load` running in the background. */
export interface LoadRun {
  /** Lines it printed on stderr so far. */
  errLines: string[];
  /** Resolves with its exit code and the JSON document it printed. */
  finished: Promise<{ code: number; document: LoadDocument; stderr: string }>;
}

/** The fields of `deno task load --json` the cluster tests read. */
export interface LoadDocument {
  tasks: number;
  succeeded: number;
  timeouts: number;
  errors: Record<string, number>;
  longestGapMs: number;
  durationMs: number;
  throughput: number;
  perWorker: Record<string, number>;
  ignoredReplies: { unknown: number; invalid: number; unexpectedSender: number };
  options: { replies: string };
}

/**
 * How long a load run may take: a few thousand tasks, with a node killed
 * and restarted in the middle, take a minute or two on a loaded machine.
 */
export const LOAD_TIMEOUT_MS = 300_000;

/**
 * Starts `deno task load --json --no-save` with `args`, against `stack`'s
 * secrets; `finished` fails naming it, once it and its children are
 * killed, if it runs longer than `timeoutMs`.
 */
export function startLoad(stack: Stack, args: string[], timeoutMs = LOAD_TIMEOUT_MS): LoadRun {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "load", "--json", "--no-save", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", ...stack.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    // Its own process group: `deno task` runs the load in a child process.
    detached: true,
  }).spawn();
  const errLines: string[] = [];
  const stderr = (async () => {
    let pending = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop()!;
      errLines.push(...lines);
    }
    if (pending) errLines.push(pending);
  })();
  const stdout = new Response(child.stdout).text();
  const finished = (async () => {
    const [status, text] = await withDeadline(
      Promise.all([child.status, stdout, stderr]),
      timeoutMs,
      `\`deno task load ${args.join(" ")}\``,
      () => killGroup(child),
    ).catch((error) => {
      if (!(error instanceof DeadlineError)) throw error;
      throw new DeadlineError(
        `\`deno task load ${args.join(" ")}\``,
        timeoutMs,
        errLines.join("\n"),
      );
    });
    const all = errLines.join("\n");
    let document: LoadDocument;
    try {
      document = JSON.parse(text);
    } catch {
      throw new Error(`deno task load printed no JSON (exit ${status.code}):\n${text}\n${all}`);
    }
    return { code: status.code, document, stderr: all };
  })();
  return { errLines, finished };
}

/** What the workers' logs say they did. */
export interface WorkerAccount {
  /** "Task succeeded" lines per task id. */
  succeeded: Map<string, number>;
  /** Copies of answered requests, answered from the record. */
  answeredAgain: number;
  /** Lines saying a worker lost its connection. */
  lostConnections: number;
}

/** Reads the JSON log lines of `services` and counts what they ran. */
export async function workerAccount(stack: Stack, services: string[]): Promise<WorkerAccount> {
  const logs = (await stack.compose(["logs", "--no-color", ...services])).stdout;
  const account: WorkerAccount = { succeeded: new Map(), answeredAgain: 0, lostConnections: 0 };
  for (const line of logs.split("\n")) {
    const start = line.indexOf("{");
    if (start === -1) continue;
    let entry: { msg?: string; task_id?: string };
    try {
      entry = JSON.parse(line.slice(start));
    } catch {
      continue;
    }
    if (entry.msg === "Task succeeded" && entry.task_id) {
      account.succeeded.set(entry.task_id, (account.succeeded.get(entry.task_id) ?? 0) + 1);
    } else if (entry.msg?.startsWith("Answered a repeated request")) account.answeredAgain++;
    else if (entry.msg === "Lost the broker connection; reconnecting") account.lostConnections++;
  }
  return account;
}
