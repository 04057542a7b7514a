/**
 * Task B: answers "Hello from Task B" after `work_ms` of work (default 200).
 *
 * @module
 */

import { defineFunction, simulateWork } from "@task-system/runtime";

export default defineFunction({
  name: "task_b",
  queue: "queue_b",
  // Celery clients call it by the name the Celery task it replaces had.
  celeryNames: ["tasks.task_b"],
  async handler(payload, context) {
    await simulateWork(payload, context, 200);
    return "Hello from Task B";
  },
});
