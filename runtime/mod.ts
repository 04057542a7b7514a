/**
 * What a function module needs: define the function. The worker runtime
 * (`deno task worker <name>`, and the worker image) loads the module's
 * default export into a sandbox and serves it.
 *
 * @example
 * ```ts
 * import { defineFunction } from "@task-system/runtime";
 *
 * export default defineFunction({
 *   name: "hello",
 *   queue: "queue_hello",
 *   handler: (payload) => `Hello, ${payload.name ?? "world"}`,
 * });
 * ```
 *
 * @module
 */

export {
  defineFunction,
  type FunctionDefinition,
  InvalidPayloadError,
  NonRetryableError,
  type TaskContext,
} from "./define_function.ts";
export type { Payload } from "../core/contract/request.ts";
export type { EventAttributes } from "../core/contract/cloud_events.ts";
export { simulateWork } from "./simulate_work.ts";
export { SILENT_LOGGER } from "../core/log.ts";
