import assert from "node:assert/strict";
import { readFunctions } from "./read_functions.ts";

Deno.test("readFunctions() reads each function and its queue", () => {
  const text = "name: x\nfunctions:\n  task_a:\n    queue: queue_a\n  task_b: {queue: queue_b}\n";
  assert.deepEqual(readFunctions(text), [
    { name: "task_a", queue: "queue_a" },
    { name: "task_b", queue: "queue_b" },
  ]);
});

Deno.test("readFunctions() leaves out functions served by Celery workers: no Deno worker to deploy", () => {
  const text = "functions:\n  task_a: {queue: queue_a}\n" +
    "  task_c: {queue: queue_c, protocol: celery, celery_name: tasks.task_c}\n";
  assert.deepEqual(readFunctions(text), [{ name: "task_a", queue: "queue_a" }]);
});

Deno.test("readFunctions() says what is wrong with functions:", () => {
  assert.throws(() => readFunctions("name: x\n", "a.yml"), /a\.yml as it has no 'functions:'/);
  assert.throws(() => readFunctions("functions:\n  task_a: {}\n"), /function 'task_a'/);
  assert.throws(() => readFunctions("functions:\n  Task: {queue: q}\n"), TypeError);
  assert.throws(() => readFunctions("functions: [\n"), SyntaxError);
});
