/**
 * Everything a worker's queue receives requests through, declared at every
 * start: the route of each protocol the function speaks (`protocol.ts`),
 * and the bindings of its triggers to the events exchange
 * (`events.ts`).
 *
 * @module
 */

import type { Broker } from "../../../core/broker/broker.ts";
import type { FunctionInfo } from "../../define_function.ts";
import { declareEventRoute } from "./events.ts";
import { declareRoutes } from "./protocol.ts";

/** Declares the routes of `queue`: its protocols', and `triggers` on the events exchange. */
export async function declareWorkerRoutes(
  broker: Broker,
  queue: string,
  info: FunctionInfo,
  triggers: readonly string[],
): Promise<void> {
  await declareRoutes(broker, queue, info);
  await declareEventRoute(broker, queue, triggers);
}
