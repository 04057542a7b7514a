/**
 * What the gateway needs of the system: the part of the client library's
 * `TaskClient` it uses, so that a `TaskClient` is one as it is and unit
 * tests give a fake.
 *
 * @module
 */

import type {
  CallOutcome,
  CancelResult,
  EmitOptions,
  FunctionRoute,
  Payload,
  SubmitOptions,
  TaskCallOptions,
} from "../client/mod.ts";

/** The calls the gateway makes on the client library. */
export interface GatewayBackend {
  readonly functions: ReadonlyMap<string, FunctionRoute>;
  request(fn: string, payload?: Payload, options?: TaskCallOptions): Promise<CallOutcome>;
  submit(fn: string, payload?: Payload, options?: SubmitOptions): Promise<string>;
  result(id: string, options?: { timeoutMs?: number }): Promise<CallOutcome>;
  cancel(id: string, options?: { waitMs?: number }): Promise<CancelResult>;
  emit(type: string, data?: Record<string, unknown>, options?: EmitOptions): Promise<string>;
  waitForWorkers(fns: readonly string[], options: { timeoutMs: number }): Promise<unknown>;
}
