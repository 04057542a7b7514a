/**
 * What a function module needs: define the function, run it as a worker.
 *
 * @example
 * ```ts
 * import { defineFunction, serve } from "./_runtime/mod.ts";
 *
 * const hello = defineFunction({
 *   name: "hello",
 *   queue: "queue_hello",
 *   handler: (payload) => `Hello, ${payload.name ?? "world"}`,
 * });
 * export default hello;
 *
 * if (import.meta.main) await serve(hello);
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
export type { Payload } from "./contract.ts";
export { serve } from "./serve.ts";
export { simulateWork } from "./simulate_work.ts";
