/**
 * The compose stack's two scheduler replicas, on the stand-in image's
 * RabbitMQ 4.0.5, with a registry that gives task_a a one-second schedule
 * (in a copy of the repository, after `deno task manifests`, as a user
 * does): the active replica is stopped, the other fires the next tick, and
 * task_a's worker runs every tick once, counted from its log.
 */

import assert from "node:assert/strict";
import { NEEDS_DOCKER } from "./_infra.ts";
import { waitFor } from "./_helpers.ts";
import { holdEngine } from "./_engine_lock.ts";
import { createStack, type Stack } from "./_compose.ts";
import { copyRepository } from "./_repository.ts";

const SCHEDULERS = ["scheduler-1", "scheduler-2"];

/** The JSON lines a service logged, parsed (compose prefixes each with the container's name). */
async function logOf(stack: Stack, service: string): Promise<Record<string, unknown>[]> {
  const { stdout } = await stack.compose(["logs", "--no-color", service]);
  return stdout.split("\n").flatMap((line) => {
    const start = line.indexOf("{");
    if (start === -1) return [];
    try {
      return [JSON.parse(line.slice(start))];
    } catch {
      return [];
    }
  });
}

/** The tick ids task_a's worker ran to success, repeats included. */
async function runs(stack: Stack): Promise<string[]> {
  return (await logOf(stack, "worker-a")).filter((line) => line.msg === "Task succeeded")
    .map((line) => String(line.task_id));
}

/** The replica whose log says it fires, if one does. */
async function activeReplica(stack: Stack, among: string[]): Promise<string | undefined> {
  for (const service of among) {
    const lines = await logOf(stack, service);
    if (lines.some((line) => /^Active: this replica fires/.test(String(line.msg)))) return service;
  }
  return undefined;
}

Deno.test({
  name:
    "compose stack: two schedulers; the active one stopped, the other fires the next tick within 5 s; every tick runs once",
  ignore: NEEDS_DOCKER,
  async fn() {
    await using _engine = await holdEngine("shared");
    const dir = await copyRepository();
    let stack: Stack | undefined;
    try {
      const registry = `${dir}/functions/registry.yaml`;
      const text = await Deno.readTextFile(registry);
      await Deno.writeTextFile(
        registry,
        text.replace(
          "  task_a:\n    queue: queue_a\n",
          '  task_a:\n    queue: queue_a\n    schedule: "* * * * * *"\n',
        ),
      );
      // In the copy: deno task takes its configuration from the working directory.
      const made = await new Deno.Command(Deno.execPath(), {
        args: ["task", "manifests"],
        cwd: dir,
        signal: AbortSignal.timeout(120_000),
      }).output();
      assert.equal(made.code, 0, new TextDecoder().decode(made.stderr));
      assert.match(await Deno.readTextFile(`${dir}/compose.yaml`), /- --scheduled=queue_a$/m);

      stack = await createStack("sched", { files: [`${dir}/compose.yaml`] });
      await stack.compose(["up", "-d", "--build", "worker-a", ...SCHEDULERS]);
      await waitFor(async () => (await runs(stack!)).length >= 5, "5 ticks run", 180_000, 1000);

      let active: string | undefined;
      await waitFor(
        async () => (active = await activeReplica(stack!, SCHEDULERS)) !== undefined,
        "an active replica",
        30_000,
        500,
      );
      const standby = SCHEDULERS.find((service) => service !== active)!;
      const health = async (service: string) =>
        (await stack!.inspect((await stack!.containers(service))[0])).State as unknown as {
          Health?: { Status: string };
        };
      await waitFor(
        async () => (await health(standby)).Health?.Status === "healthy",
        "the standby is healthy",
        60_000,
        1000,
      );

      const stoppedAt = Date.now();
      await stack.compose(["stop", active!]);
      await waitFor(
        async () => (await activeReplica(stack!, [standby])) !== undefined,
        "the standby becomes the active replica",
        30_000,
        500,
      );
      const before = (await runs(stack)).length;
      await waitFor(
        async () => (await runs(stack!)).length >= before + 10,
        "10 more ticks",
        60_000,
        1000,
      );

      const fired = (await logOf(stack, standby)).filter((line) => line.msg === "Fired a tick");
      const next = fired.find((line) => Date.parse(String(line.tick)) > stoppedAt);
      assert.ok(next, "the standby fired a tick after the stop");
      assert.ok(
        Number(next.late_ms) <= 5000,
        `the first tick after the stop was ${next.late_ms} ms late`,
      );

      const ids = await runs(stack);
      const repeated = ids.filter((id, i) => ids.indexOf(id) !== i);
      assert.deepEqual(repeated, [], "no tick ran twice");
      const times = ids.map((id) => Date.parse(id.replace(/^task_a@/, ""))).sort((a, b) => a - b);
      const lost: string[] = [];
      for (let tick = times[0]; tick <= times.at(-1)!; tick += 1000) {
        if (!times.includes(tick)) lost.push(new Date(tick).toISOString());
      }
      assert.deepEqual(lost, [], "no tick lost, the stop included");
      assert.ok(times[0] < stoppedAt && times.at(-1)! > stoppedAt);
      console.log(
        `${times.length} ticks run once each; ${active} stopped, ${standby} fired the next ${next.late_ms} ms late`,
      );
    } finally {
      await stack?.down();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
