/**
 * Task A: answers "Hello from Task A" after `work_ms` of work (default 100).
 *
 * @module
 */

import { defineFunction, simulateWork } from "@task-system/runtime";

export default defineFunction({
  name: "task_a",
  queue: "queue_a",
  // Celery clients call it by the name the Celery task it replaces had.
  celeryNames: ["tasks.task_a"],
  async handler(payload, context) {
    await simulateWork(payload, context, 100);
    return "Hello from Task A";
  },
});
