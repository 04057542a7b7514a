import assert from "node:assert/strict";
import { DeadlineTimer } from "./deadline_timer.ts";

function deadlines() {
  const waiting = new Map<string, number>();
  const ended: string[] = [];
  let done!: () => void;
  const allEnded = new Promise<void>((resolve) => done = resolve);
  const timer = new DeadlineTimer((now) => {
    let next = Infinity;
    for (const [name, at] of waiting) {
      if (at <= now) {
        waiting.delete(name);
        ended.push(name);
      } else next = Math.min(next, at);
    }
    if (waiting.size === 0) done();
    return next;
  });
  const add = (name: string, inMs: number) => {
    const at = performance.now() + inMs;
    waiting.set(name, at);
    timer.schedule(at);
  };
  return { timer, waiting, ended, add, allEnded };
}

Deno.test("DeadlineTimer ends each deadline once, earliest first, whatever order they came in", async () => {
  const { add, ended, allEnded } = deadlines();
  add("late", 60);
  add("early", 10);
  add("middle", 30);
  await allEnded;
  assert.deepEqual(ended, ["early", "middle", "late"]);
});

Deno.test("DeadlineTimer.cancel stops it: nothing ends, and no timer keeps the process alive", async () => {
  const { add, ended, timer } = deadlines();
  add("never", 20);
  timer.cancel();
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.deepEqual(ended, []);
});
