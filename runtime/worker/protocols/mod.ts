/**
 * The protocols a worker reads requests in and answers in, as one concept
 * behind this face: the native contract and Celery's (`protocol.ts`, the only
 * worker file that knows Celery), events as requests (`events.ts`), results
 * emitted as events (`chain.ts`), and the route of each, declared at every
 * start (`routes.ts`). The consume pipeline names no file inside.
 *
 * @module
 */

export type { AnswerFacts, ReadRequest, WorkerProtocol } from "./protocol.ts";
export { protocolFor, untriggeredError } from "./events.ts";
export { createChainEmitter } from "./chain.ts";
export { declareWorkerRoutes } from "./routes.ts";
