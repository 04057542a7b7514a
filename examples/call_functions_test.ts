import assert from "node:assert/strict";
import { callFunctions } from "./call_functions.ts";

Deno.test("callFunctions() prints both results, here on the embedded broker", async () => {
  const lines: string[] = [];
  const ok = await callFunctions({ local: true }, (line) => lines.push(line));
  assert.equal(ok, true, lines.join("\n"));
  assert.deepEqual(lines, ["task_a: Hello from Task A", "task_b: Hello from Task B"]);
});
