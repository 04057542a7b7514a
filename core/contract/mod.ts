/**
 * The wire contract between callers, functions and operator tools: what a
 * request, a reply, a progress event, a dead letter and a ping look like on
 * the broker, the names of queues, exchanges and headers, and how each is
 * checked. Workers, the dispatcher and the client library share this and
 * nothing else of each other, so any AMQP client that follows
 * docs/wire-contract.md can call a function.
 *
 * @module
 */

export * from "./message.ts";
export * from "./json.ts";
export * from "./envelope.ts";
export * from "./names.ts";
export * from "./request.ts";
export * from "./reply.ts";
export * from "./control.ts";
export * from "./celery.ts";
export * from "./events.ts";
export * from "./dead_letter.ts";
export * from "./users.ts";
export * from "./named_callers.ts";
export * from "./cancel.ts";
export * from "./schedule.ts";
export * from "./cloud_events.ts";
export * from "./gateway_calls.ts";
