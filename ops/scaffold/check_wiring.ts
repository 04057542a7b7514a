/**
 * Checks that every file which names the functions agrees with
 * test-config.yml's `functions:`: a hand edit that adds a function to one
 * file and forgets another, or leaves a removed one behind, is a problem
 * this finds. What `deno task new` writes passes it by construction.
 *
 * @module
 */

import { parse } from "yaml";
import { functionManifestFiles } from "../kubernetes/function_manifests.ts";
import { functionsOf } from "./plan_new_function.ts";
import {
  CLUSTER_NODES,
  passwordSecretOf,
  PROJECT_PATHS,
  type ProjectFiles,
} from "./project_files.ts";

type Service = Record<string, unknown> & {
  environment?: Record<string, unknown>;
  secrets?: ({ source?: string; target?: string } | string)[];
};

interface Compose {
  services?: Record<string, Service>;
  secrets?: Record<string, { file?: string }>;
}

/** Reads a project file, relative to the root; `undefined` when it does not exist. */
export type ReadText = (path: string) => Promise<string | undefined>;

function urlsOf(value: unknown): URL[] {
  return String(value ?? "").split(",").filter(Boolean).flatMap((text) => {
    try {
      return [new URL(text.trim())];
    } catch {
      return [];
    }
  });
}

function mountsPassword(service: Service, name: string): boolean {
  return (service.secrets ?? []).some((secret) =>
    typeof secret === "object" && secret.source === passwordSecretOf(name) &&
    secret.target === "amqp_password"
  );
}

/**
 * Every disagreement between test-config.yml's functions and the other
 * files, one sentence each naming the file and what to fix; none when all agree.
 */
export async function checkWiring(files: ProjectFiles, read: ReadText): Promise<string[]> {
  const problems: string[] = [];
  const functions = functionsOf(files.testConfig);
  const names = new Set(functions.keys());
  const compose = parse(files.compose, { merge: true }) as Compose;
  const cluster = parse(files.composeCluster, { merge: true }) as Compose;
  const stack = parse(files.stack, { merge: true }) as Compose;
  const lockTask = JSON.parse(files.denoJson).tasks?.["lock:worker"];
  const lockCommand = String(typeof lockTask === "string" ? lockTask : lockTask?.command);
  const say = (file: keyof ProjectFiles, text: string) =>
    problems.push(`${PROJECT_PATHS[file]}: ${text}`);

  const builds = Object.entries(compose.services ?? {}).flatMap(([service, value]) => {
    const fn = (value.build as { args?: { FUNCTION?: string } } | undefined)?.args?.FUNCTION;
    return fn === undefined ? [] : [[service, fn, value] as const];
  });
  const flags = ((compose.services?.["secrets-init"]?.command ?? []) as string[])
    .filter((arg) => arg.startsWith("--function="));
  const stackWorkers = Object.entries(stack.services ?? {}).flatMap(([service, value]) => {
    const fn = String(value.image ?? "").match(/\/worker-([a-z][a-z0-9_]*):/)?.[1];
    return fn === undefined ? [] : [[service, fn, value] as const];
  });

  for (const [name, queue] of functions) {
    const module = await read(`functions/${name}.ts`);
    if (module === undefined) {
      problems.push(`functions/${name}.ts: missing: run 'deno task new' for new functions`);
    } else if (!module.includes(`"${name}"`) || !module.includes(`"${queue}"`)) {
      problems.push(`functions/${name}.ts: does not define name "${name}" on queue "${queue}"`);
    }

    const services = builds.filter(([, fn]) => fn === name);
    if (services.length !== 1) {
      say("compose", `${services.length} services build function '${name}': want one`);
    }
    for (const [service, , value] of services) {
      const [url] = urlsOf(value.environment?.AMQP_URL);
      if (url?.username !== name || url.hostname !== "rabbitmq") {
        say("compose", `service ${service} does not connect as '${name}' to rabbitmq`);
      }
      if (!mountsPassword(value, name)) {
        say(
          "compose",
          `service ${service} does not mount ${passwordSecretOf(name)} as amqp_password`,
        );
      }
      const override = cluster.services?.[service];
      const nodes = urlsOf(override?.environment?.AMQP_URL);
      if (
        !override || nodes.length !== CLUSTER_NODES.length ||
        nodes.some((node) => node.username !== name) ||
        CLUSTER_NODES.some((node) => !nodes.some((url) => url.hostname === node))
      ) {
        say(
          "composeCluster",
          `service ${service} does not connect as '${name}' to ${CLUSTER_NODES.join(", ")}`,
        );
      }
      const allowNet = ((override?.command ?? []) as string[]).find((arg) =>
        arg.startsWith("--allow-net=")
      );
      if (!CLUSTER_NODES.every((node) => allowNet?.includes(`${node}:5672`))) {
        say("composeCluster", `service ${service} may not reach every node (--allow-net)`);
      }
    }
    if (!String(compose.secrets?.[passwordSecretOf(name)]?.file).endsWith(`/${name}.password`)) {
      say("compose", `secret ${passwordSecretOf(name)} is not the file ${name}.password`);
    }
    if (!flags.includes(`--function=${name}=${queue}`)) {
      say("compose", `secrets-init has no --function=${name}=${queue}`);
    }

    const swarm = stackWorkers.filter(([, fn]) => fn === name);
    if (swarm.length !== 1) {
      say("stack", `${swarm.length} services run the image of '${name}': want one`);
    }
    for (const [service, , value] of swarm) {
      const [url] = urlsOf(value.environment?.AMQP_URL);
      if (url?.username !== name || url.hostname !== "rabbitmq") {
        say("stack", `service ${service} does not connect as '${name}' to rabbitmq`);
      }
      if (!mountsPassword(value, name)) {
        say(
          "stack",
          `service ${service} does not mount ${passwordSecretOf(name)} as amqp_password`,
        );
      }
    }
    if (!String(stack.secrets?.[passwordSecretOf(name)]?.file).endsWith(`/${name}.password`)) {
      say("stack", `secret ${passwordSecretOf(name)} is not the file ${name}.password`);
    }

    if (!lockCommand.includes(` functions/${name}.ts`)) {
      say("denoJson", `lock:worker does not cache functions/${name}.ts`);
    }
    for (const [file, text] of Object.entries(functionManifestFiles({ name, queue }))) {
      const path = `ops/kubernetes/functions/${name}/${file}`;
      if ((await read(path)) !== text) {
        problems.push(`${path}: missing or out of date: run 'deno task manifests'`);
      }
    }
  }

  for (const [service, fn] of builds) {
    if (!names.has(fn)) say("compose", `service ${service} builds '${fn}', not in test-config.yml`);
  }
  for (const flag of flags) {
    const fn = flag.slice("--function=".length).split("=")[0];
    if (!names.has(fn)) say("compose", `secrets-init has ${flag}, not in test-config.yml`);
  }
  for (const [service, value] of Object.entries(cluster.services ?? {})) {
    const [url] = urlsOf(value.environment?.AMQP_URL);
    if (url && !names.has(url.username)) {
      say(
        "composeCluster",
        `service ${service} connects as '${url.username}', not in test-config.yml`,
      );
    }
  }
  for (const [service, fn] of stackWorkers) {
    if (!names.has(fn)) say("stack", `service ${service} runs '${fn}', not in test-config.yml`);
  }
  return problems;
}
