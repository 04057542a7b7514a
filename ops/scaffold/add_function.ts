/**
 * What `deno task new <name>` changes in the files a person writes, as
 * text, with nothing written: the function's entry in functions/registry.yaml
 * and a scenario that calls it in test-config.yml. Both are edited through
 * npm:yaml's Document API, so their comments and layout stay as they are.
 * The deployment files follow from the registry (`deno task manifests`).
 *
 * @module
 */

import { isMap, parseDocument } from "yaml";
import { ConfigError } from "../../core/config_error.ts";
import { DEFAULT_REGISTRY, parseRegistry, type Registry } from "../../core/registry.ts";
import type { NewFunction } from "./templates.ts";

/** The scenario file `deno task new` adds a scenario to. */
export const TEST_CONFIG = "test-config.yml";

const OUTPUT = { lineWidth: 0, flowCollectionPadding: false } as const;

/** The registry and scenario texts with `fn` added, and the registry they make. */
export interface AddedFunction {
  registryText: string;
  testConfigText: string;
  registry: Registry;
}

/**
 * Adds `fn` to the registry's and test-config.yml's texts. Throws a
 * `TypeError` naming the fix when `fn` cannot be added: a bad name or
 * queue, a name or queue the registry has, a name that is a stack user's.
 */
export function addFunction(
  registryText: string,
  testConfigText: string,
  fn: NewFunction,
): AddedFunction {
  const doc = parseDocument(registryText);
  const functions = doc.get("functions", true);
  if (!isMap(functions)) {
    throw new TypeError(
      `Cannot add a function to ${DEFAULT_REGISTRY} as it has no 'functions:' mapping: restore it from git`,
    );
  }
  if (functions.has(fn.name)) {
    throw new TypeError(
      `Cannot create function '${fn.name}' as ${DEFAULT_REGISTRY} has it already: choose another name, or edit the one there`,
    );
  }
  functions.set(
    fn.name,
    doc.createNode({
      queue: fn.queue,
      ...(fn.triggers?.length && { triggers: fn.triggers }),
      ...(fn.emits !== undefined && { emits: fn.emits }),
      ...(fn.schedule && {
        schedule: fn.schedule.timeZone === undefined
          ? fn.schedule.cron
          : { cron: fn.schedule.cron, time_zone: fn.schedule.timeZone },
      }),
    }),
  );
  const added = doc.toString(OUTPUT);
  let registry: Registry;
  try {
    registry = parseRegistry(added, DEFAULT_REGISTRY);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    // Only the new entry can be wrong: the registry passed before.
    const problems = error.problems.map((p) => p.message).join("; ");
    throw new TypeError(
      `Cannot create function '${fn.name}' on queue '${fn.queue}' as ${problems}`,
      { cause: error },
    );
  }
  return { registryText: added, testConfigText: addScenario(testConfigText, fn), registry };
}

/** test-config.yml with a scenario named after `fn` that calls it once, unless it has one. */
function addScenario(text: string, fn: NewFunction): string {
  const doc = parseDocument(text);
  const scenarios = doc.get("scenarios", true);
  if (!isMap(scenarios) || scenarios.has(fn.name)) return text;
  scenarios.set(
    fn.name,
    doc.createNode({
      description: `${fn.name} answers one task (made by deno task new)`,
      tasks: [{
        task: fn.name,
        payload: { work_ms: 10 },
        expect: { result: `Hello from ${fn.name}` },
      }],
    }),
  );
  return doc.toString(OUTPUT);
}
