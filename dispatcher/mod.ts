/**
 * The client library of the task system (`@task-system/client`): call the
 * functions from any Deno program, as `deno task dispatch` does.
 *
 * ```ts
 * import { connect, TaskFailedError } from "@task-system/client";
 *
 * const client = await connect(); // AMQP_URL, else the compose stack; functions from test-config.yml
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

export { connect, type ConnectOptions } from "./client/connect.ts";
export {
  DEFAULT_CALL_TIMEOUT_MS,
  type TaskCall,
  type TaskCallOptions,
  TaskClient,
} from "./client/task_client.ts";
export { TaskFailedError, TaskTimeoutError } from "./client/errors.ts";
export type {
  FunctionOption,
  FunctionProtocol,
  FunctionRoute,
  FunctionsOption,
} from "./client/functions.ts";
export type { CallOutcome, IgnoredReplies, ReplyMode } from "./client/rpc_client.ts";
export type { ConnectionEvent } from "./client/reconnecting_broker.ts";
export type { PingResult } from "./client/ping_workers.ts";
export {
  type NeededWorker,
  type WaitForWorkersOptions,
  WorkersMissingError,
} from "./client/wait_for_workers.ts";
export type { BrokerSettings } from "./client/broker_target.ts";
export { ConfigError, type ConfigErrorOptions, type ConfigProblem } from "./config/config_error.ts";
export { BrokerUnavailableError } from "../functions/_runtime/broker/broker.ts";
export { SecretFileError } from "../functions/_runtime/broker/secret_file.ts";
export type { LogLevel } from "../functions/_runtime/log.ts";
export type {
  Message,
  MessageProperties,
  Payload,
  RetryOverrides,
  TaskProgress,
  TaskReply,
  WorkerInfo,
} from "../functions/_runtime/contract/mod.ts";
