/**
 * The client library of the task system (`@task-system/client`): call the
 * functions from any Deno program, as `deno task dispatch` does.
 *
 * ```ts
 * import { connect, TaskFailedError } from "@task-system/client";
 *
 * const client = await connect(); // AMQP_URL, else the compose stack; functions/registry.yaml
 * try {
 *   const a = await client.call<string>("task_a", { work_ms: 100 });
 *   const [b] = await client.callAll<string>([{ function: "task_b", payload: { work_ms: 200 } }]);
 *   console.log(a, b.status === "fulfilled" ? b.value : b.reason);
 * } catch (error) {
 *   if (error instanceof TaskFailedError) console.error(error.errorType, error.attempts);
 * } finally {
 *   await client.close();
 * }
 * ```
 *
 * See docs/client.md for every option.
 *
 * @module
 */

export { connect, type ConnectOptions } from "./connect.ts";
export {
  DEFAULT_CALL_TIMEOUT_MS,
  type IgnoredReplies,
  type ReplyMode,
  type SubmitOptions,
  type TaskCall,
  TaskClient,
} from "./task_client.ts";
export type { CallOutcome, TaskCallOptions } from "./protocol.ts";
export {
  DEFAULT_STREAM_WINDOW,
  type StreamCall,
  type StreamedOutcome,
  type StreamOptions,
} from "./stream.ts";
export { TaskCancelledError, TaskFailedError, TaskTimeoutError } from "./errors.ts";
export { type CallState, ResultNotReadyError } from "./call_book.ts";
export type { CancelOptions, CancelOutcome, CancelResult } from "./cancel_call.ts";
export { buildEvent, emitEvent, type EmitOptions } from "./emit.ts";
export { PublishForbiddenError } from "../core/broker/mod.ts";
export type { EventAttributes } from "../core/contract/cloud_events.ts";
export type {
  FunctionOption,
  FunctionProtocol,
  FunctionRoute,
  FunctionsOption,
} from "../core/registry.ts";
export {
  type NeededWorker,
  type PingResult,
  type WaitForWorkersOptions,
  WorkersMissingError,
} from "./workers.ts";
export {
  type BrokerSettings,
  BrokerUnavailableError,
  type ConnectionEvent,
  SecretFileError,
} from "../core/broker/mod.ts";
export { ConfigError, type ConfigErrorOptions, type ConfigProblem } from "../core/config_error.ts";
export type { LogLevel } from "../core/log.ts";
export type {
  CancelAnswer,
  Message,
  MessageProperties,
  Payload,
  RetryOverrides,
  TaskProgress,
  TaskReply,
  WorkerInfo,
} from "../core/contract/mod.ts";
