import assert from "node:assert/strict";
import { ConfigError } from "../core/config_error.ts";
import { routesFrom } from "./functions.ts";

Deno.test("routesFrom() reads queues, users and Celery functions", () => {
  const routes = routesFrom({
    task_a: "queue_a",
    task_b: { queue: "queue_b", user: "b@x" },
    task_c: { queue: "queue_c", protocol: "celery", celeryName: "tasks.task_c" },
  });
  assert.deepEqual([...routes], [
    ["task_a", { queue: "queue_a", user: "task_a" }],
    ["task_b", { queue: "queue_b", user: "b@x" }],
    ["task_c", {
      queue: "queue_c",
      user: "task_c",
      protocol: "celery",
      celeryName: "tasks.task_c",
    }],
  ]);
});

Deno.test("routesFrom() names the field of a Celery function to fix", () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ queue: "queue_c", protocol: "celery" }, /'functions\.task_c\.celeryName' as it is missing/],
    [
      { queue: "queue_c", celeryName: "tasks.task_c" },
      /'functions\.task_c\.celeryName' as it is only for a function served by Celery workers/,
    ],
    [{ queue: "queue_c", protocol: "http" }, /'functions\.task_c\.protocol' as it must be native/],
    [
      { queue: "queue_c", protocol: "celery", celeryName: "tasks/c" },
      /as it must be a Celery task name/,
    ],
  ];
  for (const [route, pattern] of cases) {
    assert.throws(
      () => routesFrom({ task_c: route as { queue: string } }),
      (error: Error) => error instanceof ConfigError && pattern.test(error.message),
      JSON.stringify(route),
    );
  }
});
