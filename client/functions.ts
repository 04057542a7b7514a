/**
 * Where each function is served: the queue its workers consume, the broker
 * user they run as, which is the only sender (besides the caller's own
 * user) whose replies and pongs a caller accepts for it, and the protocol
 * they speak: the native contract (Deno workers) or Celery's (Celery
 * workers, called by their Celery task name).
 *
 * @module
 */

import { CELERY_NAME_PATTERN, NAME_PATTERN } from "../core/contract/mod.ts";
import { ConfigError } from "../core/config_error.ts";

/** What a function's workers speak: the native contract, or Celery's protocol 2 with rpc:// results. */
export type FunctionProtocol = "native" | "celery";

/** The protocols a function may be served with. */
export const FUNCTION_PROTOCOLS: readonly FunctionProtocol[] = ["native", "celery"];

/** Where a function is served. */
export interface FunctionRoute {
  /** The queue its workers consume, such as `queue_a`. */
  queue: string;
  /**
   * The broker user its workers run as: in the compose stack each function
   * has its own, named after it.
   */
  user: string;
  /**
   * Served by Celery workers: set to `celery`, with {@linkcode celeryName}.
   * @default {"native"}
   */
  protocol?: FunctionProtocol;
  /** The Celery task name its Celery workers register, such as `tasks.task_c`. */
  celeryName?: string;
}

/** A function of the `functions` option, in full. */
export interface FunctionOption {
  queue: string;
  /** @default {the function's name} */
  user?: string;
  /** @default {"native"} */
  protocol?: FunctionProtocol;
  /** Required with `protocol: "celery"`: the Celery task name, such as `tasks.task_c`. */
  celeryName?: string;
}

/**
 * Functions as the client's `functions` option gives them: function name to
 * its queue, or to its queue, the broker user of its workers (default: the
 * function's name) and, for a function served by Celery workers, `protocol:
 * "celery"` and its Celery task name.
 */
export type FunctionsOption = Record<string, string | FunctionOption>;

/** What is wrong with a function's `protocol` and Celery task name, and in which field. */
export interface RouteProblem {
  field: "protocol" | "celeryName";
  /** A predicate of the field: "must be ...", "is ...". */
  message: string;
}

/**
 * What is wrong with a function's protocol and Celery task name; `undefined`
 * when they fit together. Shared by the `functions` option and
 * test-config.yml, which names the task name's field `nameField`.
 */
export function routeProblem(
  protocol: unknown,
  celeryName: unknown,
  nameField = "celeryName",
): RouteProblem | undefined {
  if (protocol !== undefined && !FUNCTION_PROTOCOLS.includes(protocol as FunctionProtocol)) {
    return {
      field: "protocol",
      message: `must be ${FUNCTION_PROTOCOLS.join(" or ")}, but is ${
        JSON.stringify(protocol)
      }: use celery for a function served by Celery workers, or leave it out`,
    };
  }
  if (protocol === "celery" && celeryName === undefined) {
    return {
      field: "celeryName",
      message:
        `is missing, and protocol celery needs it: give the Celery task name its workers register, such as tasks.task_c`,
    };
  }
  if (protocol !== "celery" && celeryName !== undefined) {
    return {
      field: "celeryName",
      message:
        `is only for a function served by Celery workers: set protocol to celery, or remove ${nameField}`,
    };
  }
  if (
    celeryName !== undefined &&
    (typeof celeryName !== "string" || !CELERY_NAME_PATTERN.test(celeryName))
  ) {
    return {
      field: "celeryName",
      message: `must be a Celery task name (dotted Python names, such as tasks.task_c), but is ${
        JSON.stringify(celeryName)
      }`,
    };
  }
  return undefined;
}

/** Broker user names as RabbitMQ and the workers' `ALLOWED_SENDERS` take them. */
export const USER_PATTERN = /^[\w.@-]{1,64}$/;

/**
 * The routes of a `functions` option, checked. Throws a
 * {@linkcode ConfigError} naming the entry to fix.
 */
export function routesFrom(option: FunctionsOption): Map<string, FunctionRoute> {
  const routes = new Map<string, FunctionRoute>();
  for (const [name, value] of Object.entries(option)) {
    const route = typeof value === "string" ? { queue: value } : value;
    if (!NAME_PATTERN.test(name)) {
      throw new ConfigError(
        `Cannot use the function '${name}' of 'functions' as its name is not lower_snake_case: name it as its module, such as task_a`,
      );
    }
    if (typeof route?.queue !== "string" || !NAME_PATTERN.test(route.queue)) {
      throw new ConfigError(
        `Cannot use 'functions.${name}' as its queue '${route?.queue}' is not lower_snake_case: give the queue its workers consume, such as queue_a`,
      );
    }
    const user = route.user ?? name;
    if (!USER_PATTERN.test(user)) {
      throw new ConfigError(
        `Cannot use 'functions.${name}' as its user '${user}' is not a broker user name: use letters, digits, _ . @ -`,
      );
    }
    const problem = routeProblem(route.protocol, route.celeryName);
    if (problem !== undefined) {
      throw new ConfigError(
        `Cannot use 'functions.${name}.${problem.field}' as it ${problem.message}`,
      );
    }
    routes.set(name, {
      queue: route.queue,
      user,
      ...(route.protocol === "celery" && { protocol: "celery", celeryName: route.celeryName }),
    });
  }
  return routes;
}
