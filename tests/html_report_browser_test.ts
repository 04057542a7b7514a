/**
 * The HTML report in a real browser: headless Chromium renders the report of
 * a real run (embedded broker), and the test checks the drawn page, not only
 * the markup: a bar per attempt with a width in the DOM Chromium built, and
 * each worker's colour on the screenshot's pixels.
 */

import assert from "node:assert/strict";
import { main } from "../dispatcher/main.ts";
import { workerColors } from "../dispatcher/report/html_timeline.ts";
import type { RunDocument } from "../dispatcher/report/mod.ts";
import { CHROMIUM, NEEDS_CHROMIUM } from "./_infra.ts";
import { countColor, decodePng } from "./_png.ts";

const CONFIG = `
name: Browser check
functions:
  task_a: { queue: queue_a }
  task_b: { queue: queue_b }
scenarios:
  drawn:
    tasks:
      - { task: task_a, count: 4, payload: { work_ms: 60 }, expect: { result: Hello from Task A } }
      - task: task_b
        backoff: { base_delay_ms: 30 }
        payload: { fail_attempts: 1, work_ms: 80 }
        expect: { result: Hello from Task B }
`;

/** Runs headless Chromium on `url` with `args`; resolves with its stdout. */
async function chromium(url: string, args: string[], profile: string): Promise<string> {
  const output = await new Deno.Command(CHROMIUM!, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      `--user-data-dir=${profile}`,
      "--force-device-scale-factor=1",
      "--hide-scrollbars",
      ...args,
      url,
    ],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    throw new Error(`chromium failed (${output.code}): ${new TextDecoder().decode(output.stderr)}`);
  }
  return text;
}

Deno.test({
  name: "the HTML report of a run renders in Chromium with a drawn bar per attempt",
  ignore: NEEDS_CHROMIUM,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      const config = `${dir}/config.yml`;
      await Deno.writeTextFile(config, CONFIG);
      const html = `${dir}/report.html`;
      const code = await main(
        ["--local", "--config", config, "--quiet", "--html", html, "--out", `${dir}/run.json`],
        { out: () => {}, err: () => {}, env: () => undefined, color: { out: false, err: false } },
      );
      assert.equal(code, 0);
      const run: RunDocument = JSON.parse(await Deno.readTextFile(`${dir}/run.json`));
      const attempts = run.tasks.flatMap((t) => t.timeline);
      assert.equal(attempts.length, 6, "four tasks of one attempt, one of two");
      const url = new URL(`file://${html}`).href;

      // The DOM Chromium built from the page: every attempt's bar, with a width.
      const dom = await chromium(url, ["--dump-dom"], `${dir}/profile-dom`);
      const bars = [...dom.matchAll(/<rect class="bar run [^"]*"[^>]*>/g)].map((m) => {
        const attribute = (name: string) => m[0].match(new RegExp(` ${name}="([^"]*)"`))?.[1];
        return {
          worker: attribute("data-worker")!,
          width: Number(attribute("width")),
          height: Number(attribute("height")),
        };
      });
      assert.equal(bars.length, attempts.length, dom.slice(0, 2000));
      for (const bar of bars) {
        assert.ok(bar.width > 0 && bar.height > 0, `a bar of ${bar.width} x ${bar.height}`);
      }
      for (const task of run.tasks) assert.ok(dom.includes(task.task_id), task.label);

      // The screenshot: the page is drawn, and each worker's bars in its colour.
      const png = `${dir}/report.png`;
      await chromium(url, [`--screenshot=${png}`, "--window-size=1280,1200"], `${dir}/profile-png`);
      const image = await decodePng(await Deno.readFile(png));
      assert.deepEqual([image.width, image.height], [1280, 1200]);
      const white = countColor(image, "#ffffff");
      assert.ok(white < image.width * image.height * 0.98, "the page is not blank");
      for (const [worker, color] of workerColors(run.tasks)) {
        // The SVG is drawn at 1 px per unit; a bar's outline (retried attempts)
        // may cover its edge pixels, so count its inside only.
        const inside = bars.filter((b) => b.worker === worker)
          .reduce((sum, b) => sum + Math.max(0, b.width - 2) * (b.height - 2), 0);
        const pixels = countColor(image, color);
        assert.ok(inside > 500, `${worker}'s bars are big enough to see`);
        assert.ok(
          pixels >= 0.9 * inside,
          `${worker}: ${pixels} pixels of ${color}, expected at least 90% of ${inside}`,
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
