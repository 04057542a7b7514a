/**
 * Fault injection on real containers: replicas killed or stopped mid-work,
 * the broker restarted mid-run, bad messages. Each step prints what it sent,
 * what completed, what was lost and what was answered twice on the wire
 * (whether a repeat reaches the caller is counted by fault_tally_test.ts,
 * in the dispatcher's own output: a call's promise settles once).
 */

import assert from "node:assert/strict";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import type { Broker } from "../core/broker/mod.ts";
import { encodeRequest, parseReply, replyQueueName, type TaskReply } from "../core/contract/mod.ts";
import { type CallOutcome, TaskClient } from "../client/mod.ts";
import { countLogged, tallyFaults, tapReplies, type WireLog } from "./_fault_tally.ts";
import { connectWhenUp, createStack, docker, type Stack } from "./_compose.ts";
import { NEEDS_DOCKER } from "./_infra.ts";
import { waitFor } from "./_helpers.ts";
import { exitWithin, runDeno, startDeno } from "./_processes.ts";
import { holdEngine } from "./_engine_lock.ts";

/** The container whose short id is the host name in a worker id (`task_a@<host>-<pid>`). */
function containerOf(workerId: string, containers: string[]): string | undefined {
  const host = workerId.split("@")[1]?.replace(/-\d+$/, "");
  return containers.find((id) => host !== undefined && id.startsWith(host));
}

interface Run {
  /** Task ids sent, in order. */
  sent: string[];
  outcomes: CallOutcome[];
  /** Worker ids of every `started` event, per task id. */
  started: Map<string, string[]>;
  /** Every reply on the wire, counted below the client. */
  wire: WireLog;
}

/** Sends `count` task_a requests at once, calling `onStarted` at each start event. */
async function dispatch(
  connect: () => Promise<Broker>,
  count: number,
  workMs: number,
  onStarted: (taskId: string, worker: string) => void,
): Promise<{ run: Run; client: TaskClient; done: Promise<void> }> {
  const { broker, wire } = tapReplies(await connect());
  const client = await TaskClient.open(broker, {
    functions: new Map([["task_a", { queue: "queue_a", user: "task_a" }]]),
  });
  const run: Run = { sent: [], outcomes: [], started: new Map(), wire };
  const calls = Array.from({ length: count }, (_, i) => {
    const taskId = `fault-${i}-${crypto.randomUUID().slice(0, 8)}`;
    run.sent.push(taskId);
    run.started.set(taskId, []);
    return client.request("task_a", { work_ms: workMs }, {
      taskId,
      timeoutMs: 60_000,
      onProgress: (progress) => {
        if (progress.event !== "started") return;
        run.started.get(taskId)!.push(progress.worker);
        onStarted(taskId, progress.worker);
      },
    }).then((outcome) => {
      run.outcomes.push(outcome);
    });
  });
  return { run, client, done: Promise.all(calls).then(() => {}) };
}

/**
 * The figures of a step, from both ends: the replies on the wire and the
 * tasks the workers logged as finished (`docker compose logs`).
 */
async function tally(name: string, stack: Stack, run: Run) {
  const logs = (await stack.compose(["logs", "--no-color", "--no-log-prefix", "worker-a"])).stdout;
  const figures = tallyFaults({
    sent: run.sent,
    wire: run.wire,
    finished: countLogged(logs.split("\n"), "Task succeeded"),
  });
  console.log(`${name}: ${JSON.stringify(figures)}`);
  return figures;
}

async function scaleWorkerA(stack: Stack, broker: Broker, replicas: number) {
  await stack.compose(["up", "-d", "--scale", `worker-a=${replicas}`]);
  await waitFor(
    async () => (await broker.inspectQueue("queue_a"))?.consumers === replicas,
    `${replicas} consumers on queue_a`,
    30_000,
  );
}

Deno.test({
  name: "fault injection on the compose stack: nothing lost, every task finished by a worker",
  ignore: NEEDS_DOCKER,
  async fn(t) {
    await using _engine = await holdEngine("shared");
    const stack = await createStack("faults");
    let broker: Broker | undefined;
    const connections: Broker[] = [];
    const connect = async () => {
      const connection = await connectAmqp(await stack.url("dispatcher"));
      connections.push(connection);
      return connection;
    };
    // The password comes from the stack's secrets, not from the command line.
    const dispatcherUrl = `amqp://dispatcher@127.0.0.1:${stack.amqpPort}`;
    try {
      await stack.compose(["up", "-d", "--build", "--scale", "worker-a=2"]);
      broker = await connectWhenUp(await stack.url("dispatcher"));
      await scaleWorkerA(stack, broker, 2);

      await t.step(
        "SIGKILL one of two replicas while tasks are in flight: all complete once",
        async () => {
          const containers = await stack.containers("worker-a");
          let victim: { worker: string; taskId: string } | undefined;
          const workers = new Set<string>();
          const { run, client, done } = await dispatch(connect, 20, 400, (taskId, worker) => {
            workers.add(worker);
            if (!victim && workers.size === 2) victim = { worker, taskId };
          });
          await waitFor(() => victim !== undefined, "both replicas working", 20_000);
          const container = containerOf(victim!.worker, containers);
          assert.ok(container, `a container for ${victim!.worker}`);
          await docker(["kill", "--signal", "KILL", container]);
          await done;
          client.close();
          const figures = await tally("SIGKILL", stack, run);
          assert.equal(figures.completed, 20);
          assert.equal(figures.lost, 0);
          assert.ok(figures.finished_by_workers >= 20, "every task finished on a worker");
          const interrupted = run.outcomes.find((o) => o.taskId === victim!.taskId)!;
          assert.equal(interrupted.kind, "reply");
          assert.notEqual(
            interrupted.kind === "reply" && interrupted.reply.worker,
            victim!.worker,
            "the killed replica's task was finished by another replica",
          );
          assert.ok(run.started.get(victim!.taskId)!.length >= 2, "it was delivered again");
        },
      );

      await t.step(
        "SIGTERM during work: the task in flight finishes, nothing is redelivered, exit 0",
        async () => {
          await scaleWorkerA(stack, broker!, 2);
          const containers = await stack.containers("worker-a");
          let victim: { worker: string; taskId: string } | undefined;
          const { run, client, done } = await dispatch(connect, 4, 1500, (taskId, worker) => {
            victim ??= { worker, taskId };
          });
          await waitFor(() => victim !== undefined, "a replica working", 20_000);
          const container = containerOf(victim!.worker, containers)!;
          const stopped = docker(["stop", container]);
          await done;
          await stopped;
          client.close();
          const figures = await tally("SIGTERM", stack, run);
          assert.equal(figures.completed, 4);
          assert.equal(figures.lost, 0);
          assert.equal(figures.duplicates_on_wire, 0, JSON.stringify(run.outcomes));
          const detail = JSON.stringify({
            victim,
            started: [...run.started],
            outcomes: run.outcomes,
          });
          for (const [taskId, workers] of run.started) {
            assert.equal(workers.length, 1, `${taskId} ran once: ${detail}`);
          }
          const finished = run.outcomes.find((o) => o.taskId === victim!.taskId)!;
          assert.equal(finished.kind === "reply" && finished.reply.worker, victim!.worker);
          assert.equal((await stack.inspect(container)).State.ExitCode, 0);
        },
      );

      await t.step(
        "a worker container answers bad messages with errors and keeps serving",
        async () => {
          await scaleWorkerA(stack, broker!, 1);
          const replies: TaskReply[] = [];
          const caller = await connect();
          const replyTo = await caller.openReplyQueue((message) => {
            const parsed = parseReply(message.body);
            if (parsed.ok) replies.push(parsed.value);
          });
          const dlqBefore = (await broker!.inspectQueue("queue_a.dlq"))!.messages;
          const encoder = new TextEncoder();
          const bad: [string, Uint8Array, string | undefined][] = [
            ["InvalidJson", encoder.encode("{"), "application/json"],
            ["InvalidContentType", encoder.encode('{"task":"task_a"}'), "text/plain"],
            ["WrongFunction", encoder.encode('{"task":"task_b"}'), "application/json"],
            ["MessageTooLarge", new Uint8Array(1024 * 1024 + 1), "application/json"],
          ];
          for (const [type, body, contentType] of bad) {
            await caller.publish("queue_a", {
              body,
              properties: { contentType, replyTo, correlationId: type },
            });
          }
          await caller.publish(
            "queue_a",
            encodeRequest("task_a", { work_ms: 0 }, { taskId: "valid", replyTo }),
          );
          await waitFor(() => replies.length === bad.length + 1, "a reply to each", 20_000);
          for (const [type] of bad) {
            assert.equal(replies.find((r) => r.task_id === type)?.error?.type, type);
          }
          assert.equal(replies.find((r) => r.task_id === "valid")?.result, "Hello from Task A");
          await waitFor(
            async () =>
              (await broker!.inspectQueue("queue_a.dlq"))!.messages === dlqBefore + bad.length,
            "every bad message dead-lettered",
          );
        },
      );

      await t.step(
        "requests waiting in the broker survive its crash: every one succeeds once the workers are back",
        async () => {
          // Nobody consumes queue_a while the requests wait.
          await stack.compose(["stop", "worker-a"]);
          const admin = await connectAmqp(await stack.url("admin"));
          // A reply queue of the caller's own, as workers answer only to those.
          const replies = replyQueueName();
          await admin.declareQueue(replies, { durable: true });
          const ids = Array.from({ length: 30 }, (_, i) => `persisted-${i}`);
          for (const taskId of ids) {
            await admin.publish(
              "queue_a",
              encodeRequest("task_a", { work_ms: 0 }, { taskId, replyTo: replies }),
            );
          }
          assert.equal((await admin.inspectQueue("queue_a"))?.messages, ids.length);
          await admin.close();
          const [rabbitmq] = await stack.containers("rabbitmq");
          await docker(["kill", "--signal", "KILL", rabbitmq]);
          await stack.compose(["start", "rabbitmq"]);
          const after = await connectWhenUp(await stack.url("admin"));
          try {
            // A quorum queue counts its messages once it has recovered its log,
            // which a loaded machine can take a while to do after the restart.
            await waitFor(
              async () => (await after.inspectQueue("queue_a"))?.messages === ids.length,
              "every request is still in queue_a after the crash",
              60_000,
            );
            // The replies queue is the test's own plumbing, declared just before
            // the crash: the broker may not have written its declaration to disk
            // yet (it syncs its metadata log periodically). The requests are what
            // is under test; declaring it again changes nothing about them.
            await after.declareQueue(replies, { durable: true });
            await stack.compose(["start", "worker-a"]);
            const succeeded = new Set<string>();
            await waitFor(
              async () => {
                for (
                  let reply = await after.get(replies);
                  reply;
                  reply = await after.get(replies)
                ) {
                  after.ack(reply);
                  const parsed = parseReply(reply.body);
                  if (parsed.ok && parsed.value.status === "success") {
                    succeeded.add(parsed.value.task_id!);
                  }
                }
                return succeeded.size === ids.length;
              },
              "every request answered",
              90_000,
              250,
            );
            console.log(`broker crash: ${ids.length} waiting, ${succeeded.size} succeeded after`);
            assert.deepEqual([...succeeded].sort(), [...ids].sort());
          } finally {
            await after.deleteQueue(replies).catch(() => {});
            await after.close();
          }
          broker = await connectWhenUp(await stack.url("dispatcher"));
        },
      );

      await t.step(
        "the broker crashes mid-run: the dispatcher fails fast, workers come back",
        async () => {
          const dir = await Deno.makeTempDir();
          const config = `${dir}/slow.yml`;
          await Deno.writeTextFile(
            config,
            `functions:
  task_a: { queue: queue_a }
  task_b: { queue: queue_b }
scenarios:
  slow:
    tasks:
      - { task: task_a, payload: { work_ms: 3000 }, timeout_ms: 60000 }
      - { task: task_b, payload: { work_ms: 3000 }, timeout_ms: 60000 }
`,
          );
          await broker!.close();
          broker = undefined;
          const dispatcher = startDeno(
            ["task", "dispatch", "--broker", dispatcherUrl, "--config", config],
            stack.env,
          );
          await dispatcher.waitForLine(/^Dispatching tasks\.\.\.$/, 30_000);
          const [rabbitmq] = await stack.containers("rabbitmq");
          await docker(["kill", "--signal", "KILL", rabbitmq]);
          const brokerDown = Date.now();
          // Half its tasks' 60 s timeout: a dispatcher that missed the loss
          // would wait for them (and exit 1); this one must notice it (exit 3).
          const { code } = await exitWithin(
            dispatcher,
            30_000,
            "the dispatcher to exit after the broker was killed",
          );
          const output = dispatcher.lines.join("\n");
          await dispatcher.stop("SIGKILL");
          console.log(
            `dispatcher exited ${code} within ${Date.now() - brokerDown} ms of the crash`,
          );
          assert.equal(code, 3, output);
          assert.match(output, /Lost the connection to the broker/);
          // Deno's task runner echoes the command line; everything after it is ours.
          const ours = dispatcher.lines.filter((line) => !line.startsWith("Task dispatch"));
          assert.ok(!ours.join("\n").includes("guest:guest"), "password masked");

          await stack.compose(["start", "rabbitmq"]);
          broker = await connectWhenUp(await stack.url("dispatcher"));
          // The two slow tasks were persistent in durable queues: after the
          // restart they run again, and nothing is left behind.
          await waitFor(
            async () => {
              const a = await broker!.inspectQueue("queue_a");
              const b = await broker!.inspectQueue("queue_b");
              return a?.consumers === 1 && b?.consumers === 1 && a.messages === 0 &&
                b.messages === 0;
            },
            "workers back and the queues drained",
            60_000,
            250,
          );
          const logs = (await stack.compose(["logs", "--no-color", "worker-b"])).text;
          assert.match(logs, /Lost the broker connection; reconnecting/);
          const next = await runDeno(["task", "dispatch", "--broker", dispatcherUrl], stack.env);
          assert.equal(next.code, 0, next.stdout + next.stderr);
          assert.match(next.stdout, /^Passed: 2\/2$/m);
          await Deno.remove(dir, { recursive: true });
        },
      );
    } finally {
      for (const connection of connections) await connection.close();
      await broker?.close();
      await stack.down();
    }
  },
});
