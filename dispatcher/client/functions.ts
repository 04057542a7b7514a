/**
 * Where each function is served: the queue its workers consume, and the
 * broker user they run as, which is the only sender (besides the caller's
 * own user) whose replies and pongs a caller accepts for it.
 *
 * @module
 */

import { NAME_PATTERN } from "../../functions/_runtime/contract/mod.ts";
import { ConfigError } from "../config/config_error.ts";

/** Where a function is served. */
export interface FunctionRoute {
  /** The queue its workers consume, such as `queue_a`. */
  queue: string;
  /**
   * The broker user its workers run as: in the compose stack each function
   * has its own, named after it.
   */
  user: string;
}

/**
 * Functions as the client's `functions` option gives them: function name to
 * its queue, or to its queue and the broker user of its workers (default:
 * the function's name).
 */
export type FunctionsOption = Record<string, string | { queue: string; user?: string }>;

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
    routes.set(name, { queue: route.queue, user });
  }
  return routes;
}
