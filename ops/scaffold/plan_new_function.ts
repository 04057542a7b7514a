/**
 * What `deno task new <name>` changes, computed from the project's files
 * as text, with nothing written: the function's entry (and a scenario) in
 * test-config.yml; its worker service, password secret and secrets-init
 * flag in compose.yaml; its worker on every node in compose.cluster.yaml;
 * its service and secret in stack.yaml; its file in the worker image's
 * lockfile task in deno.json. The new worker entries are copies of the last
 * function's, so they inherit whatever that one has (anchors, limits,
 * comments stay as they are: YAML is edited through npm:yaml's Document
 * API, not re-serialised from data).
 *
 * @module
 */

import { isMap, isSeq, Pair, parse, parseDocument, Scalar } from "yaml";
import type { Document, Node, YAMLMap, YAMLSeq } from "yaml";
import { NAME_PATTERN } from "../../core/contract/names.ts";
import {
  clusterUrlOf,
  passwordSecretOf,
  PROJECT_PATHS,
  type ProjectFiles,
  workerServiceOf,
} from "./project_files.ts";

/** Broker users the stack has already, which a function (named as its user) cannot take. */
export const RESERVED_NAMES = ["admin", "dispatcher", "operator", "guest", "keda"];

/** A new function: its name and queue. */
export interface NewFunction {
  name: string;
  queue: string;
}

/** What the new function changes. */
export interface NewFunctionPlan {
  /** Every project file, with the function added. */
  files: ProjectFiles;
  /** Its position among the functions (0 for the first). */
  index: number;
}

const OUTPUT = { lineWidth: 0, flowCollectionPadding: false } as const;

/** Throws a `TypeError` naming the fix when `fn` cannot be added to the project. */
export function checkNewFunction(fn: NewFunction, existing: Map<string, string>): void {
  for (const [what, value] of [["name", fn.name], ["queue", fn.queue]]) {
    if (!NAME_PATTERN.test(value)) {
      throw new TypeError(
        `Cannot create a function with ${what} '${value}' as it is not lower_snake_case: use a lower-case letter, then letters, digits and _ (at most 63 in all)`,
      );
    }
  }
  if (fn.name.endsWith("_test")) {
    throw new TypeError(
      `Cannot create function '${fn.name}' as functions/${fn.name}.ts would be taken for a test file: choose a name that does not end in _test`,
    );
  }
  if (RESERVED_NAMES.includes(fn.name)) {
    throw new TypeError(
      `Cannot create function '${fn.name}' as its workers' broker user would be the stack's own '${fn.name}': choose another name`,
    );
  }
  if (existing.has(fn.name)) {
    throw new TypeError(
      `Cannot create function '${fn.name}' as ${PROJECT_PATHS.testConfig} has it already: choose another name, or edit the one there`,
    );
  }
  for (const [other, queue] of existing) {
    if (queue === fn.queue) {
      throw new TypeError(
        `Cannot create function '${fn.name}' on queue '${fn.queue}' as function '${other}' consumes it: give it a queue of its own (--queue)`,
      );
    }
  }
}

/** The functions of test-config.yml and their queues, in order. */
export function functionsOf(testConfig: string): Map<string, string> {
  const config = parse(testConfig) as { functions?: Record<string, { queue?: unknown }> } | null;
  const functions = config?.functions;
  if (!functions || typeof functions !== "object") {
    throw new TypeError(
      `Cannot add a function to ${PROJECT_PATHS.testConfig} as it has no 'functions:' mapping: add one`,
    );
  }
  return new Map(Object.entries(functions).map(([name, entry]) => [name, String(entry?.queue)]));
}

function problem(file: keyof ProjectFiles, what: string): TypeError {
  return new TypeError(
    `Cannot add the function to ${
      PROJECT_PATHS[file]
    } as ${what}: restore it from git, or add the function there by hand`,
  );
}

function mapAt(doc: Document, path: string[], file: keyof ProjectFiles): YAMLMap {
  const node = doc.getIn(path, true);
  if (!isMap(node)) throw problem(file, `it has no '${path.join(".")}' mapping`);
  return node;
}

/**
 * The service entry (key and value) of `services` for which `matches` is
 * true of its value, resolved as data; the last one when several match.
 */
function findService(
  services: YAMLMap,
  matches: (service: Record<string, unknown>) => boolean,
  doc: Document,
): Pair<Scalar<string>, Node> | undefined {
  const resolved = doc.toJS({ maxAliasCount: -1 }) as { services: Record<string, unknown> };
  let found: Pair<Scalar<string>, Node> | undefined;
  for (const pair of services.items as Pair<Scalar<string>, Node>[]) {
    const service = resolved.services[String(pair.key?.value ?? pair.key)];
    if (service && typeof service === "object" && matches(service as Record<string, unknown>)) {
      found = pair;
    }
  }
  return found;
}

/** Inserts `key: value` into `map` right after `after`. */
function insertAfter(map: YAMLMap, after: Pair, key: string, value: Node): void {
  const index = map.items.indexOf(after as Pair<unknown, unknown>);
  map.items.splice(index + 1, 0, new Pair(new Scalar(key), value));
}

function userOf(url: unknown): string | undefined {
  try {
    return decodeURIComponent(new URL(String(url).split(",")[0]).username);
  } catch {
    return undefined;
  }
}

function envOf(service: Record<string, unknown>): Record<string, unknown> {
  return (service.environment ?? {}) as Record<string, unknown>;
}

function addToTestConfig(text: string, fn: NewFunction): string {
  const doc = parseDocument(text);
  const functions = mapAt(doc, ["functions"], "testConfig");
  functions.set(fn.name, doc.createNode({ queue: fn.queue }));
  const scenarios = doc.getIn(["scenarios"], true);
  if (isMap(scenarios) && !scenarios.has(fn.name)) {
    const scenario = doc.createNode({
      description: `${fn.name} answers one task (made by deno task new)`,
      tasks: [{
        task: fn.name,
        payload: { work_ms: 10 },
        expect: { result: `Hello from ${fn.name}` },
      }],
    });
    scenarios.set(fn.name, scenario);
  }
  return doc.toString(OUTPUT);
}

function addToCompose(text: string, fn: NewFunction, last: string): string {
  const doc = parseDocument(text, { merge: true });
  const services = mapAt(doc, ["services"], "compose");
  const template = findService(
    services,
    (s) => (s.build as { args?: { FUNCTION?: unknown } })?.args?.FUNCTION === last,
    doc,
  );
  if (!template) throw problem("compose", `no service builds function '${last}' to copy`);
  const service = template.value!.clone() as YAMLMap;
  service.setIn(["build", "args", "FUNCTION"], fn.name);
  service.setIn(["environment", "AMQP_URL"], `amqp://${fn.name}@rabbitmq:5672`);
  const secret = service.getIn(["secrets", 0]);
  if (!isMap(secret)) throw problem("compose", `the service of '${last}' mounts no secret`);
  secret.set("source", passwordSecretOf(fn.name));
  insertAfter(services, template, workerServiceOf(fn.name), service);

  const secrets = mapAt(doc, ["secrets"], "compose");
  const lastSecret = secrets.items.find((pair) =>
    String((pair.key as Scalar)?.value) === passwordSecretOf(last)
  );
  if (!lastSecret) throw problem("compose", `it has no secret '${passwordSecretOf(last)}'`);
  const newSecret = (lastSecret.value as Node).clone() as YAMLMap;
  newSecret.set(
    "file",
    String(newSecret.get("file")).replace(/[^/]*\.password$/, `${fn.name}.password`),
  );
  insertAfter(secrets, lastSecret, passwordSecretOf(fn.name), newSecret);

  const command = doc.getIn(["services", "secrets-init", "command"], true);
  if (!isSeq(command)) throw problem("compose", "secrets-init has no command list");
  const flags = (command as YAMLSeq<Scalar>).items;
  const lastFlag = flags.findLastIndex((item) => String(item.value).startsWith("--function="));
  if (lastFlag === -1) throw problem("compose", "secrets-init's command has no --function=");
  flags.splice(lastFlag + 1, 0, new Scalar(`--function=${fn.name}=${fn.queue}`));
  return doc.toString(OUTPUT);
}

function addToCluster(text: string, fn: NewFunction, last: string, index: number): string {
  const doc = parseDocument(text, { merge: true });
  const services = mapAt(doc, ["services"], "composeCluster");
  const template = findService(services, (s) => userOf(envOf(s).AMQP_URL) === last, doc);
  if (!template) throw problem("composeCluster", `no worker of '${last}' to copy`);
  const service = template.value!.clone() as YAMLMap;
  service.setIn(["environment", "AMQP_URL"], clusterUrlOf(fn.name, index));
  insertAfter(services, template, workerServiceOf(fn.name), service);
  return doc.toString(OUTPUT);
}

function addToStack(text: string, fn: NewFunction, last: string): string {
  const doc = parseDocument(text, { merge: true });
  const services = mapAt(doc, ["services"], "stack");
  const image = (name: string) => new RegExp(`/worker-${name}:`);
  const template = findService(services, (s) => image(last).test(String(s.image)), doc);
  if (!template) throw problem("stack", `no service runs the image of '${last}' to copy`);
  const service = template.value!.clone() as YAMLMap;
  service.set(
    "image",
    String((service.get("image", true) as Scalar).value).replace(
      image(last),
      `/worker-${fn.name}:`,
    ),
  );
  service.setIn(["environment", "AMQP_URL"], `amqp://${fn.name}@rabbitmq:5672`);
  const secret = service.getIn(["secrets", 0]);
  if (!isMap(secret)) throw problem("stack", `the service of '${last}' mounts no secret`);
  secret.set("source", passwordSecretOf(fn.name));
  insertAfter(services, template, workerServiceOf(fn.name), service);
  const secrets = mapAt(doc, ["secrets"], "stack");
  const lastSecret = secrets.items.find((pair) =>
    String((pair.key as Scalar)?.value) === passwordSecretOf(last)
  );
  if (!lastSecret) throw problem("stack", `it has no secret '${passwordSecretOf(last)}'`);
  const newSecret = (lastSecret.value as Node).clone() as YAMLMap;
  newSecret.set(
    "file",
    String(newSecret.get("file")).replace(/[^/]*\.password$/, `${fn.name}.password`),
  );
  insertAfter(secrets, lastSecret, passwordSecretOf(fn.name), newSecret);
  return doc.toString(OUTPUT);
}

function addToDenoJson(text: string, fn: NewFunction, last: string): string {
  const config = JSON.parse(text);
  const task = config.tasks?.["lock:worker"];
  const command: string | undefined = typeof task === "string" ? task : task?.command;
  const lastFile = ` functions/${last}.ts`;
  if (command === undefined || !command.includes(lastFile)) {
    throw problem("denoJson", `its lock:worker task does not cache functions/${last}.ts`);
  }
  const updated = command.replace(lastFile, `${lastFile} functions/${fn.name}.ts`);
  if (typeof task === "string") config.tasks["lock:worker"] = updated;
  else task.command = updated;
  return `${JSON.stringify(config, null, 2)}\n`;
}

/** Computes every file's new text; throws a `TypeError` naming the fix. */
export function planNewFunction(files: ProjectFiles, fn: NewFunction): NewFunctionPlan {
  const existing = functionsOf(files.testConfig);
  checkNewFunction(fn, existing);
  const last = [...existing.keys()].at(-1);
  if (last === undefined) {
    throw problem("testConfig", "it lists no function whose wiring the new one could copy");
  }
  const index = existing.size;
  return {
    index,
    files: {
      testConfig: addToTestConfig(files.testConfig, fn),
      compose: addToCompose(files.compose, fn, last),
      composeCluster: addToCluster(files.composeCluster, fn, last, index),
      stack: addToStack(files.stack, fn, last),
      denoJson: addToDenoJson(files.denoJson, fn, last),
    },
  };
}
