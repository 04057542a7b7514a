/**
 * End-to-end: the three-node cluster of compose.cluster.yaml loses one node
 * at a time in the middle of a `deno task load` of 2,000 tasks, each node
 * in turn, the node the load is connected to every time. Every task
 * succeeds exactly once, counted at both ends: the load's replies, and the
 * workers' logs and counters. The pause each loss caused (the longest gap
 * between two replies) is printed.
 *
 * Before the kills: every function's work, dead-letter and retry queue is a
 * quorum queue with a member on each node, each node runs with
 * `pause_minority`, and `deno task dispatch` runs over the cluster. While
 * the first node is away, a caller declares its reply queue: two of its
 * members are online then, and the third once the node is back.
 */

import assert from "node:assert/strict";
import { connect } from "../client/mod.ts";
import { loadRegistry } from "../core/registry.ts";
import { deployedFunctions } from "../ops/manifests/generate.ts";
import { createStack } from "./_compose.ts";
import {
  acknowledged,
  type ApiQueue,
  listQueues,
  type LoadDocument,
  NODE_SERVICES,
  NODES,
  startLoad,
  waitForFullMembership,
  workerAccount,
} from "./_cluster.ts";
import { docker, readComposeFile } from "./_docker.ts";
import { NEEDS_DOCKER } from "./_infra.ts";
import { waitFor } from "./_helpers.ts";
import { runDeno } from "./_processes.ts";
import { holdEngine } from "./_engine_lock.ts";

const TASKS = 2000;
/**
 * Each task's work at its worker (one task at a time each): 2,000 tasks on
 * two workers then take at least 20 s whatever the machine's speed. The
 * kill waits for about 500 tasks by the management API's counters, which
 * lag up to 5 s (RabbitMQ's statistics interval); without a floor, a fast
 * run had finished by then and the node died under a client that was
 * closing, not under load.
 */
const WORK_MS = 20;

Deno.test({
  name: "A three-node cluster loses each node in turn under load, and every task succeeds once",
  ignore: NEEDS_DOCKER,
  async fn() {
    // Alone: see tests/_engine_lock.ts.
    await using _engine = await holdEngine("exclusive");
    const functions = deployedFunctions(await loadRegistry());
    const queues = functions.flatMap(({ queue }) => [queue, `${queue}.dlq`]);
    // The workers `up` starts: those of a profile (worker-celery) start only when asked.
    const workers = Object.entries((await readComposeFile()).services)
      .filter(([service, spec]) =>
        service.startsWith("worker-") && (spec as { profiles?: unknown }).profiles === undefined
      )
      .map(([service]) => service);
    // One task at a time per worker (WORK_MS says why): the stack's default is 64.
    const stack = await createStack("cluster", {
      files: ["compose.yaml", "compose.cluster.yaml"],
      env: { CONCURRENCY: "1" },
    });
    const urlFrom = (first: number) =>
      [first, (first + 1) % 3, (first + 2) % 3]
        .map((i) => `amqp://dispatcher@127.0.0.1:${stack.nodes[i].amqpPort}`)
        .join(",");
    try {
      await stack.compose(["up", "-d", "--build"]);

      // Workers start once all three nodes have joined: their queues have three members.
      const members = await waitForFullMembership(stack, queues, 0);
      for (const name of queues) {
        const queue = members.find((q) => q.name === name)!;
        assert.deepEqual([...queue.members!].sort(), NODES, `${name} is on every node`);
      }
      // The running nodes hold the split policy, not only the file (a split
      // itself is not tested: see docs/cluster.md).
      for (const service of NODE_SERVICES) {
        const setting = await stack.compose([
          "exec",
          "-T",
          service,
          "rabbitmqctl",
          "-q",
          "eval",
          "application:get_env(rabbit, cluster_partition_handling).",
        ]);
        assert.equal(setting.stdout.trim(), "{ok,pause_minority}", `${service}: ${setting.text}`);
      }

      const dispatch = await runDeno([
        "task",
        "dispatch",
        "--broker",
        urlFrom(0),
        "--scenario",
        "recovers_after_retries",
        "--wait-workers",
        "60",
        "--no-save",
        "--quiet",
      ], stack.env);
      assert.equal(dispatch.code, 0, dispatch.stdout + dispatch.stderr);
      // Its retries went through a delay queue, replicated like the others.
      const retryQueues = (await listQueues(stack, 0))
        .map((q) => q.name)
        .filter((name) => /\.retry\.\d+$/.test(name));
      assert.ok(retryQueues.length > 0, "the retries made a retry queue");
      await waitForFullMembership(stack, retryQueues, 0);

      const clientOptions = (first: number) => ({
        url: urlFrom(first),
        functions: Object.fromEntries(functions.map(({ name, queue }) => [name, queue])),
        env: (name: string) => ({ SECRETS_DIR: stack.secretsDir } as Record<string, string>)[name],
      });
      const replyQueues = async (node: number) =>
        (await listQueues(stack, node)).filter((q) => q.name.startsWith("replies."));
      const callerDuringOutage = async (node: number, away: number) => {
        const before = new Set((await replyQueues(node)).map((q) => q.name));
        const client = await connect({ ...clientOptions(node), replies: "queue" });
        try {
          let queue: ApiQueue | undefined;
          await waitFor(
            async () => {
              [queue] = (await replyQueues(node)).filter((q) => !before.has(q.name));
              return queue !== undefined;
            },
            "the caller's reply queue listed",
            30_000,
            250,
          );
          assert.ok(queue);
          assert.equal(queue.type, "quorum");
          // RabbitMQ 4.0 makes the away node a member too; its member is not
          // online until the node is back and has caught up.
          assert.deepEqual(
            [...queue.online ?? []].sort(),
            NODES.filter((_, i) => i !== away),
            `declared with ${NODES[away]} away: members ${queue.members}, online ${queue.online}`,
          );
          return { client, queue: queue.name };
        } catch (error) {
          await client.close();
          throw error;
        }
      };

      const rounds: { node: string; document: LoadDocument }[] = [];
      for (let node = 0; node < 3; node++) {
        const watcher = (node + 1) % 3;
        const load = startLoad(stack, [
          "--broker",
          urlFrom(node),
          "--tasks",
          String(TASKS),
          "--concurrency",
          "50",
          "--work-ms",
          String(WORK_MS),
          "--wait-workers",
          "60",
        ]);
        await waitFor(
          () => load.errLines.some((line) => line.startsWith("Load: ")),
          "the load started",
          60_000,
          100,
        );
        // Kill the node once the run is well under way: about 500 tasks done.
        const before = await acknowledged(stack, watcher);
        await waitFor(
          async () => (await acknowledged(stack, watcher)) - before >= 1000,
          "about 500 tasks done",
          60_000,
          200,
        );
        const [container] = await stack.containers(NODE_SERVICES[node]);
        await docker(["kill", container]);
        const { code, document, stderr } = await load.finished;
        console.log(
          `${
            NODE_SERVICES[node]
          } killed: ${document.succeeded}/${TASKS} succeeded in ${document.durationMs} ms (${document.throughput} tasks/s), longest gap between replies ${document.longestGapMs} ms, ${document.ignoredReplies.unknown} duplicate replies ignored`,
        );
        assert.equal(code, 0, stderr);
        assert.equal(document.options.replies, "queue", "several URLs: a reply queue of its own");
        assert.equal(document.succeeded, TASKS);
        assert.equal(document.timeouts, 0);
        assert.deepEqual(document.errors, {});
        assert.match(stderr, /Lost the broker connection; reconnecting/, "its node died under it");
        assert.match(stderr, /Reconnected to the broker after \d+ ms/);
        rounds.push({ node: NODE_SERVICES[node], document });

        // A caller that starts while the node is away: its reply queue has
        // two members online, and its third once the node returns.
        const late = node === 0 ? await callerDuringOutage(watcher, node) : undefined;
        await docker(["start", container]);
        await waitForFullMembership(stack, [...queues, ...late ? [late.queue] : []], watcher);
        await late?.client.close();
      }

      // The other end: what the workers ran, by their logs and their counters.
      const account = await workerAccount(stack, workers);
      const expected = 3 * TASKS + 1;
      const twice = [...account.succeeded].filter(([, n]) => n > 1);
      console.log(
        `workers: ${account.succeeded.size} tasks succeeded, ${twice.length} more than once, ${account.answeredAgain} copies answered from the record, ${account.lostConnections} lost connections`,
      );
      assert.deepEqual(twice, [], "no task ran to success twice");
      assert.equal(account.succeeded.size, expected, "every task of the runs, once");
      assert.ok(account.lostConnections >= 2, "the workers lost their nodes too");

      const client = await connect(clientOptions(0));
      try {
        const { workers: pongs } = await client.ping({ timeoutMs: 5000 });
        assert.equal(pongs.length, workers.length, "every worker answers");
        const counted = pongs.reduce((sum, pong) => sum + pong.succeeded, 0);
        assert.equal(counted, expected, "the workers' own counters agree");
      } finally {
        await client.close();
      }
      assert.equal(rounds.length, 3);
    } finally {
      await stack.down();
    }
  },
});
