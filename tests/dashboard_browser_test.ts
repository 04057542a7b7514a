/**
 * `deno task dashboard` in headless Chromium, against the RabbitMQ at
 * `AMQP_URL` with real worker processes publishing task events: the page
 * refuses a visitor without the token and loads with it; a `deno task
 * dispatch` run shows in the event stream while it runs; a dead letter shows
 * up with its reason (its hostile body as text), and its replay button,
 * after a confirmation, sends it back: the dead-letter queue empties and the
 * task runs.
 *
 * `DASHBOARD_SCREENSHOT=docs/dashboard.png` keeps the screenshot there.
 */

import assert from "node:assert/strict";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { deadLetterQueueOf } from "../core/contract/mod.ts";
import type { RunDocument } from "../dispatcher/report/mod.ts";
import { AMQP_URL, NEEDS_CHROMIUM, NEEDS_RABBITMQ } from "./_infra.ts";
import { deleteFunctionQueues, uniqueName, waitFor } from "./_helpers.ts";
import { launchBrowser } from "./_cdp.ts";
import { countColor, decodePng } from "./_png.ts";
import { type RunningProcess, startDeno, startWorkerProcess } from "./_processes.ts";

const HOSTILE = `<img src=x onerror="document.title='pwned'">`;

function configFor(qa: string, qb: string): string {
  return `
name: Dashboard check
default_scenario: slow
functions:
  task_a: { queue: ${qa} }
  task_b: { queue: ${qb} }
scenarios:
  slow:
    tasks:
      - { task: task_a, count: 3, payload: { work_ms: 1200 }, expect: { result: Hello from Task A } }
      - task: task_b
        retries: 1
        backoff: { base_delay_ms: 100 }
        payload: { fail_attempts: 1, work_ms: 50 }
        expect: { result: Hello from Task B }
  expiring:
    tasks:
      - { task: task_a, payload: { work_ms: 1500 }, expect: { result: Hello from Task A } }
      - task: task_a
        timeout_ms: 300
        payload: { work_ms: 10, note: ${JSON.stringify(HOSTILE)} }
        expect: { result: Hello from Task A }
`;
}

/** The expression that finds rows of the event stream. */
const rows = (selector: string) => `[...document.querySelectorAll('#events tbody tr${selector}')]`;

Deno.test({
  name:
    "deno task dashboard in Chromium: 401 without the token, a live dispatch run in the event stream, a dead letter replayed from its button",
  ignore: NEEDS_RABBITMQ || NEEDS_CHROMIUM,
  async fn(t) {
    const qa = uniqueName("dash_a");
    const qb = uniqueName("dash_b");
    const dir = await Deno.makeTempDir({ prefix: "dashboard-" });
    const config = `${dir}/config.yml`;
    await Deno.writeTextFile(config, configFor(qa, qb));
    const token = crypto.randomUUID().replaceAll("-", "");
    const processes: RunningProcess[] = [];
    const browser = await launchBrowser(dir);
    let dashboard: RunningProcess | undefined;
    try {
      for (const [fn, queue] of [["task_a", qa], ["task_b", qb]]) {
        // One task at a time: the expiring scenario's short task must wait
        // behind its long one until its deadline passes in the queue.
        processes.push(
          await startWorkerProcess(fn, {
            AMQP_URL,
            QUEUE: queue,
            TASK_EVENTS: "true",
            CONCURRENCY: "1",
          }),
        );
      }
      dashboard = startDeno(
        ["task", "dashboard", "--port", "0", "--config", config, "--broker", AMQP_URL],
        { DASHBOARD_TOKEN: token },
      );
      const line = await dashboard.waitForLine(/^Dashboard: http:\/\//, 30_000);
      const base = line.match(/^Dashboard: (http:\/\/[^/]+)\//)![1];
      assert.equal(
        line,
        `Dashboard: ${base}/?token=<DASHBOARD_TOKEN>`,
        "a given token is not printed",
      );
      assert.match(base, /^http:\/\/dashboard\.localhost:\d+$/, "a host name of its own");
      // Programs (this test's fetch among them) reach it at the loopback address.
      const api = (await dashboard.waitForLine(/^API: http:\/\//, 30_000))
        .match(/^API: (http:\/\/[^/]+)\//)![1];
      assert.equal(api, base.replace("dashboard.localhost", "127.0.0.1"));
      const page = await browser.newPage(1400, 1250);

      await t.step("the page refuses a visitor without the token", async () => {
        await page.goto(`${base}/`);
        assert.match(await page.evaluate<string>("document.body.innerText"), /401/);
        assert.equal(await page.evaluate("document.querySelector('#functions')"), null);
        const attempts: Record<string, string>[] = [
          {},
          { authorization: "Bearer wrong-token-of-some-length" },
          { cookie: `dashboard_session=${token}` },
        ];
        for (const headers of attempts) {
          const response = await fetch(`${api}/api/state`, { headers });
          await response.body?.cancel();
          assert.equal(response.status, 401, JSON.stringify(headers));
        }
        // The dashboard connects to the broker as it starts: live once it has.
        await waitFor(
          async () => {
            const bearer = await fetch(`${api}/api/state`, {
              headers: { authorization: `Bearer ${token}` },
            });
            assert.equal(bearer.status, 200);
            return (await bearer.json()).mode === "live";
          },
          "the dashboard's state with the bearer token is live",
          30_000,
        );
      });

      await t.step("the token in the URL logs the page in and leaves the address", async () => {
        // Opened at 127.0.0.1, the login moves to the dashboard's own host name.
        await page.goto(`${api}/?token=${token}`);
        assert.equal(await page.evaluate("location.href"), `${base}/`);
        assert.equal(await page.evaluate("document.cookie"), "", "the cookie is HttpOnly");
        await page.waitFor(
          `document.querySelector("#mode").dataset.mode === "live" &&
           document.querySelectorAll("#functions tbody tr[data-function]").length === 2 &&
           document.querySelectorAll("#workers tbody tr[data-worker]").length === 2`,
          "both functions and their workers, live",
        );
        const consumers = await page.evaluate<string[]>(
          `[...document.querySelectorAll("#functions td.consumers")].map((td) => td.textContent)`,
        );
        assert.deepEqual(consumers, ["1", "1"]);
      });

      await t.step(
        "the session cookie reaches no other service on 127.0.0.1 or localhost",
        async () => {
          const cookies: string[] = [];
          const other = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (r) => {
            cookies.push(r.headers.get("cookie") ?? "");
            return new Response("<title>other</title>", {
              headers: { "content-type": "text/html" },
            });
          });
          try {
            const port = other.addr.port;
            const visitor = await browser.newPage();
            for (const host of ["127.0.0.1", "localhost"]) {
              await visitor.goto(`http://${host}:${port}/`);
            }
            assert.deepEqual(cookies.filter((c) => c !== ""), [], "no cookie went there");
            assert.ok(cookies.length >= 2, "both pages were served");
            // The dashboard's page, in the same browser, still has its session.
            await visitor.goto(`${base}/`);
            assert.ok(
              await visitor.evaluate<boolean>("document.querySelector('#functions') !== null"),
            );
          } finally {
            await other.shutdown();
          }
        },
      );

      await t.step("a dispatch run shows in the event stream while it runs", async () => {
        const out = `${dir}/slow.json`;
        const run = startDeno(
          ["task", "-q", "dispatch", "--config", config, "--broker", AMQP_URL, "--out", out],
          { TASK_EVENTS: "true" },
        );
        let exited = false;
        const code = run.child.status.then((status) => {
          exited = true;
          return status.code;
        });
        await page.waitFor(
          `${rows('[data-kind="task-sent"]')}.length >= 4 &&
           ${rows('[data-kind="task-started"]')}.length >= 1`,
          "the run's sent and started events",
        );
        assert.equal(exited, false, "the events showed while the run was still going");
        assert.equal(await code, 0, run.lines.join("\n"));
        const document: RunDocument = JSON.parse(await Deno.readTextFile(out));
        for (const task of document.tasks) {
          await page.waitFor(
            `${rows(`[data-kind="task-succeeded"][data-task-id="${task.task_id}"]`)}.length === 1`,
            `task ${task.label} succeeded in the stream`,
          );
        }
        const retried = document.tasks.find((task) => task.task === "task_b")!;
        assert.equal(
          await page.evaluate(`${rows(`[data-task-id="${retried.task_id}"]`)}
            .map((tr) => tr.dataset.kind).reverse().join(" ")`),
          "task-sent task-started task-retried task-started task-succeeded",
        );
      });

      await t.step("a dead letter shows, and its replay button sends it back", async () => {
        const out = `${dir}/expiring.json`;
        const run = startDeno(
          [
            "task",
            "-q",
            "dispatch",
            "--config",
            config,
            "--scenario",
            "expiring",
            "--broker",
            AMQP_URL,
            "--out",
            out,
          ],
          { TASK_EVENTS: "true" },
        );
        assert.equal(await run.child.status.then((s) => s.code), 1, "the short task timed out");
        const document: RunDocument = JSON.parse(await Deno.readTextFile(out));
        const expired = document.tasks.find((task) => task.status === "timeout")!;
        assert.ok(expired, "the short task timed out");
        const letter =
          `document.querySelector('.letters[data-function="task_a"] tr[data-task-id="${expired.task_id}"]')`;
        await page.waitFor(
          `document.querySelector('#functions tr[data-function="task_a"] td.dlq').textContent === "1" && ${letter}`,
          "the dead letter, with its reason",
        );
        assert.equal(await page.evaluate(`${letter}.cells[0].textContent`), "expired");
        // The hostile body is shown as text, and nothing of it ran.
        assert.ok(
          (await page.evaluate<string>(`${letter}.cells[5].textContent`)).includes(
            JSON.stringify(HOSTILE),
          ),
        );
        assert.equal(await page.evaluate("document.querySelectorAll('img').length"), 0);
        assert.notEqual(await page.evaluate("document.title"), "pwned");

        await page.evaluate(
          `document.querySelector('button.replay[data-function="task_a"]').click()`,
        );
        await page.waitFor("document.querySelector('#confirm').open", "the confirmation dialog");
        assert.match(
          await page.evaluate<string>("document.querySelector('#confirm-text').textContent"),
          new RegExp(`^Replay the 1 dead letters of task_a to ${qa}, as guest\\?`),
        );
        await page.evaluate("document.querySelector('#confirm-replay').click()");
        await page.waitFor(
          `document.querySelector('#toast').textContent.startsWith("Replayed 1 dead letters of task_a to ${qa} as guest")`,
          "the replay's result",
        );
        await page.waitFor(
          `document.querySelector('#functions tr[data-function="task_a"] td.dlq').textContent === "0"`,
          "the dead-letter queue empties",
        );
        await page.waitFor(
          `${rows(`[data-kind="task-succeeded"][data-task-id="${expired.task_id}"]`)}.length === 1`,
          "the replayed task runs and succeeds",
        );
        const broker = await connectAmqp(AMQP_URL);
        try {
          assert.equal((await broker.inspectQueue(deadLetterQueueOf(qa)))?.messages, 0);
        } finally {
          await broker.close();
        }
      });

      await t.step("the page as drawn: a screenshot", async () => {
        // The replayed letter's count settles; the figures show both functions' work.
        await page.evaluate("document.querySelector('#toast').hidden = true");
        const png = await page.screenshot();
        const kept = Deno.env.get("DASHBOARD_SCREENSHOT");
        if (kept) await Deno.writeFile(kept, png);
        const image = await decodePng(png);
        assert.deepEqual([image.width, image.height], [1400, 1250]);
        const background = countColor(image, "#f8fafc");
        assert.ok(background < image.width * image.height * 0.9, "the page is drawn");
        assert.ok(countColor(image, "#2563eb") > 50, "the sparklines are drawn");
      });
    } finally {
      await browser.close();
      if (dashboard) assert.equal(await dashboard.stop("SIGTERM"), 0, dashboard.lines.join("\n"));
      for (const process of processes) await process.stop();
      const broker = await connectAmqp(AMQP_URL);
      await deleteFunctionQueues(broker, qa, qb);
      await broker.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
