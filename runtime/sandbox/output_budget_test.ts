import assert from "node:assert/strict";
import { type DroppedOutput, OutputBudget } from "./output_budget.ts";

const LIMITS = { lines: 3, chars: 100, windowMs: 1000 };

function budget() {
  let now = 0;
  const reports: DroppedOutput[] = [];
  const b = new OutputBudget((dropped) => reports.push(dropped), {
    limits: LIMITS,
    now: () => now,
  });
  return { b, reports, at: (ms: number) => now = ms };
}

Deno.test("OutputBudget admits lines within a window's lines and characters, and drops the rest", () => {
  const { b, reports } = budget();
  assert.deepEqual([b.admit(10), b.admit(10), b.admit(10), b.admit(1)], [true, true, true, false]);
  b.flush();
  assert.deepEqual(reports, [{ lines: 1, chars: 1 }]);
  const chars = budget();
  assert.deepEqual([chars.b.admit(60), chars.b.admit(50), chars.b.admit(40)], [true, false, true]);
  chars.b.flush();
  assert.deepEqual(chars.reports, [{ lines: 1, chars: 50 }]);
});

Deno.test("OutputBudget starts a new window after windowMs, and reports each window's drops once", () => {
  const { b, reports, at } = budget();
  for (let i = 0; i < 5; i++) b.admit(1);
  b.drop(2, 20); // dropped inside the sandbox
  at(999);
  assert.equal(b.admit(1), false, "the same window");
  at(1000);
  assert.equal(b.admit(1), true, "a new window");
  b.flush();
  b.flush();
  assert.deepEqual(reports, [{ lines: 5, chars: 23 }]);
});

Deno.test("OutputBudget reports a window's drops by itself when the window ends", async () => {
  const reports: DroppedOutput[] = [];
  const b = new OutputBudget((dropped) => reports.push(dropped), {
    limits: { lines: 1, chars: 100, windowMs: 20 },
  });
  b.admit(1);
  b.admit(1);
  b.admit(1);
  assert.deepEqual(reports, [], "not before the window ends");
  const deadline = Date.now() + 2000;
  while (reports.length === 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.deepEqual(reports, [{ lines: 2, chars: 2 }]);
});
