/**
 * `deno task dashboard` when the broker goes away (row 142 of the test
 * audit): its connection runs through a TCP proxy that the test cuts. The
 * stream its pages read says the connection ended, and once the broker
 * answers again the dashboard is live again by itself.
 */

import assert from "node:assert/strict";
import { AMQP_URL, NEEDS_RABBITMQ } from "./_infra.ts";
import { uniqueName, waitFor } from "./_helpers.ts";
import { startGatedProxy } from "./_proxy.ts";
import { type RunningProcess, startDeno } from "./_processes.ts";

interface StateEvent {
  mode: string;
  notice: string | null;
}

/** Reads `state` events from a dashboard's stream into `states`, until the stream ends. */
async function follow(response: Response, states: StateEvent[]): Promise<void> {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end: number;
      while ((end = buffer.indexOf("\n\n")) !== -1) {
        const message = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = message.match(/^event: state\ndata: (.*)$/m)?.[1];
        if (data) states.push(JSON.parse(data));
      }
    }
  } catch {
    // The stream ends with the dashboard.
  }
}

/** Stops `process`, and kills it if it has not exited within `ms`. */
async function stopWithin(process: RunningProcess, ms: number): Promise<number> {
  const timer = setTimeout(() => process.child.kill("SIGKILL"), ms);
  try {
    return await process.stop("SIGTERM");
  } finally {
    clearTimeout(timer);
  }
}

Deno.test({
  name: "deno task dashboard says when the broker goes away, and is live again once it answers",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const broker = new URL(AMQP_URL);
    const proxy = startGatedProxy({ hostname: broker.hostname, port: Number(broker.port) || 5672 });
    proxy.open();
    const dir = await Deno.makeTempDir({ prefix: "dashboard-reconnect-" });
    const config = `${dir}/config.yml`;
    await Deno.writeTextFile(
      config,
      `functions:\n  task_a: { queue: ${uniqueName("reconnect_a")} }\n` +
        "scenarios:\n  s: { tasks: [{ task: task_a }] }\n",
    );
    const through = new URL(AMQP_URL);
    through.hostname = "127.0.0.1";
    through.port = String(proxy.port);
    const token = crypto.randomUUID().replaceAll("-", "");
    const dashboard = startDeno(
      ["task", "dashboard", "--port", "0", "--config", config, "--broker", through.href],
      { DASHBOARD_TOKEN: token },
    );
    const abort = new AbortController();
    const states: StateEvent[] = [];
    let following: Promise<void> | undefined;
    try {
      const api = (await dashboard.waitForLine(/^API: http:\/\//, 30_000))
        .match(/^API: (http:\/\/[^/]+)\//)![1];
      const headers = { authorization: `Bearer ${token}` };
      const events = await fetch(`${api}/api/events`, { headers, signal: abort.signal });
      assert.equal(events.status, 200);
      following = follow(events, states);
      const seen = (mode: string, from = 0) => states.slice(from).some((s) => s.mode === mode);
      await waitFor(() => seen("live"), "the page is told the dashboard is live", 30_000, 50);

      proxy.cut();
      const cutAt = states.length;
      await waitFor(
        () => seen("connecting", cutAt) || seen("unavailable", cutAt),
        "the page is told the connection ended",
        30_000,
        50,
      );
      const told = states.slice(cutAt).find((s) => s.mode !== "live")!;
      assert.match(told.notice ?? "", /connection to .* ended|No RabbitMQ answers/, told.notice!);
      const state = await (await fetch(`${api}/api/state`, { headers })).json();
      assert.notEqual(state.mode, "live", "the picture says so too");

      proxy.open();
      const openedAt = states.length;
      await waitFor(
        () => seen("live", openedAt),
        "the dashboard is live again by itself",
        30_000,
        50,
      );
      assert.equal(states.at(-1)!.notice, null);
    } finally {
      abort.abort();
      await following;
      assert.equal(await stopWithin(dashboard, 10_000), 0, dashboard.lines.join("\n"));
      await proxy.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
