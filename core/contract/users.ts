/**
 * The broker users the product itself runs as, named once: every tool,
 * the definitions that create them, the deployments and the checks import
 * them from here. A function's workers run as a user of their own, named in
 * the function registry (functions/registry.yaml), never one of these.
 *
 * @module
 */

/** The administrator: the management UI, everything. */
export const ADMIN_USER = "admin";

/** `deno task dispatch`, `load` and `status`, and the client library by default. */
export const DISPATCHER_USER = "dispatcher";

/**
 * The operator tools (`deno task dlq`, the dashboard's replays): read dead
 * letters and send them back to their functions, nothing else.
 */
export const OPERATOR_USER = "operator";

/**
 * `deno task dashboard`. It may call no function, but workers answer its
 * pings: watching the system is its job.
 */
export const DASHBOARD_USER = "dashboard";

/**
 * Python programs that call the Deno functions through Celery's API
 * (`delay()`, `send_task()`; docs/celery.md).
 */
export const CELERY_CLIENT_USER = "celery_client";

/**
 * RabbitMQ's default user: on a broker with no users of its own every party
 * is it. The compose stack's definitions lock it out.
 */
export const GUEST_USER = "guest";

/** The user KEDA counts queue lengths as, in the Kubernetes base. */
export const KEDA_USER = "keda";

/**
 * `deno task scheduler`: fires the ticks of the functions the registry
 * schedules, through the schedule exchange only (docs/schedules.md).
 */
export const SCHEDULER_USER = "scheduler";

/**
 * `deno task gateway`, the HTTP front door (docs/gateway.md): calls the
 * functions and emits the events its API keys allow, nothing else.
 */
export const GATEWAY_USER = "gateway";

/**
 * Every user of the stack that is not a function's: a function's workers
 * may not run as one of them, so no function can take another party's
 * rights or password file.
 */
export const STACK_USERS: readonly string[] = Object.freeze([
  ADMIN_USER,
  DISPATCHER_USER,
  OPERATOR_USER,
  DASHBOARD_USER,
  CELERY_CLIENT_USER,
  GUEST_USER,
  KEDA_USER,
  SCHEDULER_USER,
  GATEWAY_USER,
]);

/**
 * Broker users whose requests a function accepts unless it says otherwise;
 * its worker's own user is always accepted too (its retries).
 */
export const DEFAULT_ALLOWED_SENDERS: readonly string[] = Object.freeze([
  DISPATCHER_USER,
  ADMIN_USER,
  OPERATOR_USER,
  GATEWAY_USER,
]);

/**
 * The users whose `task-sent` events a dashboard believes: the callers of
 * the compose stack, the dispatcher and the administrator.
 */
export const DEFAULT_CALLERS: readonly string[] = Object.freeze([DISPATCHER_USER, ADMIN_USER]);
