/**
 * The functions of test-config.yml and their queues, for the Kubernetes
 * manifests. Reads only `functions:`; `deno task dispatch` checks the rest.
 * A function served by Celery workers (`protocol: celery`) has no Deno
 * worker to deploy, so it is left out.
 *
 * @module
 */

import { parse } from "yaml";
import { type FunctionQueue, NAME_PATTERN } from "../rabbitmq/definitions.ts";

/** Reads `functions:` of a test-config.yml text; throws a `TypeError` naming what is wrong. */
export function readFunctions(text: string, file = "test-config.yml"): FunctionQueue[] {
  let config: unknown;
  try {
    config = parse(text);
  } catch (error) {
    throw new SyntaxError(`Cannot read the functions of ${file}: ${(error as Error).message}`);
  }
  const functions = (config as { functions?: unknown } | null)?.functions;
  if (typeof functions !== "object" || functions === null || Array.isArray(functions)) {
    throw new TypeError(
      `Cannot read the functions of ${file} as it has no 'functions:' mapping: add 'functions: {task_a: {queue: queue_a}}'`,
    );
  }
  const deno = Object.entries(functions).filter(([, entry]) =>
    (entry as { protocol?: unknown } | null)?.protocol !== "celery"
  );
  return deno.map(([name, entry]) => {
    const queue = (entry as { queue?: unknown } | null)?.queue;
    if (!NAME_PATTERN.test(name) || typeof queue !== "string" || !NAME_PATTERN.test(queue)) {
      throw new TypeError(
        `Cannot read function '${name}' of ${file}: give it a lower_snake_case name and 'queue: <lower_snake_case>'`,
      );
    }
    return { name, queue };
  });
}
