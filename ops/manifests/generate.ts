/**
 * Every deployment file's part that names the functions, made from the
 * function registry in memory: the worker, secret and user blocks of
 * compose.yaml, compose.cluster.yaml and stack.yaml, and the whole of
 * `ops/kubernetes/functions/`. `deno task manifests` writes what this
 * returns; the wiring check compares it with the files, so a hand edit to
 * a generated part, or a registry change not yet generated, fails the
 * tests by name.
 *
 * @module
 */

import { ConfigError } from "../../core/config_error.ts";
import {
  DEFAULT_REGISTRY,
  type FunctionEntry,
  parseRegistry,
  type Registry,
} from "../../core/registry.ts";
import {
  type DeployedFunction,
  functionsDirectoryFiles,
  functionsKustomization,
  GENERATED_MARK,
} from "../kubernetes/function_manifests.ts";
import { SCHEDULER_FILE, schedulerManifestFile } from "../kubernetes/scheduler_manifests.ts";
import { GATEWAY_FILE, gatewayManifestFile } from "../kubernetes/gateway_manifests.ts";
import { clusterBlocks, composeBlocks, stackBlocks } from "./compose_blocks.ts";
import { replaceMarkedBlocks } from "./marked_blocks.ts";
import { DISPATCHER_USER, GATEWAY_USER } from "../../core/contract/users.ts";

/** Where the generated Kubernetes files live, from the project's root. */
export const FUNCTIONS_DIR = "ops/kubernetes/functions";

/** The hand-written files with generated blocks, and the blocks of each. */
const BLOCKS_OF: Readonly<
  Record<string, (entries: FunctionEntry[], registry: Registry) => Record<string, string[]>>
> = {
  "compose.yaml": composeBlocks,
  "compose.cluster.yaml": clusterBlocks,
  "stack.yaml": stackBlocks,
};

/** Every file the generator writes, relative to the project's root. */
export const GENERATED_FILES: readonly string[] = Object.keys(BLOCKS_OF);

/** How the generator sees the project: reads only, so a check can run it. */
export interface ProjectReader {
  /** A file's text; `undefined` when it does not exist. */
  read(path: string): Promise<string | undefined>;
  /** A directory's entries; none when it does not exist. */
  list(path: string): Promise<{ name: string; isDirectory: boolean }[]>;
}

/** What the registry makes of the project's deployment files. */
export interface GeneratedManifests {
  /** Each generated file's whole text, by its path from the project's root. */
  files: Map<string, string>;
  /**
   * Generated files and directories under {@linkcode FUNCTIONS_DIR} that
   * belong to no function of the registry any more: to delete.
   */
  stale: string[];
}

/** Reads and checks the project's registry; a `ConfigError` says what is wrong and where. */
export async function readRegistry(project: ProjectReader): Promise<Registry> {
  const text = await project.read(DEFAULT_REGISTRY);
  if (text === undefined) {
    throw new ConfigError(
      `Cannot read the function registry ${DEFAULT_REGISTRY} as it does not exist: run this in the project's root, or restore it from git`,
      { file: DEFAULT_REGISTRY },
    );
  }
  return parseRegistry(text, DEFAULT_REGISTRY);
}

/** The functions the Kubernetes base and the Swarm stack deploy: the Deno ones. */
export function deployedFunctions(registry: Registry): DeployedFunction[] {
  return [...registry.functions.values()].filter((entry) => entry.protocol === "native").map((
    { name, queue, user, triggers, emits, concurrency },
  ) => ({
    name,
    queue,
    user,
    ...(triggers && { triggers }),
    ...(emits && { emits }),
    ...(concurrency !== undefined && { concurrency }),
  }));
}

/** The queues of the functions `registry` schedules: those the scheduler may fire into. */
export function scheduledQueues(registry: Registry): string[] {
  return [...registry.functions.values()].filter((entry) => entry.schedule !== undefined)
    .map(({ queue }) => queue);
}

/**
 * The generated text of every deployment file from `registry`, and what
 * is left over from functions that are gone. Throws a `TypeError` naming
 * the file and the fix when a hand-written file lost its markers.
 */
export async function generateManifests(
  registry: Registry,
  project: ProjectReader,
): Promise<GeneratedManifests> {
  const entries = [...registry.functions.values()];
  const files = new Map<string, string>();
  for (const [path, blocksOf] of Object.entries(BLOCKS_OF)) {
    const text = await project.read(path);
    if (text === undefined) {
      throw new TypeError(`Cannot generate ${path} as it does not exist: restore it from git`);
    }
    files.set(path, replaceMarkedBlocks(text, path, blocksOf(entries, registry)));
  }
  const kubernetes = functionsDirectoryFiles(deployedFunctions(registry), {
    dispatcherEmits: registry.emitters.get(DISPATCHER_USER),
  });
  kubernetes[SCHEDULER_FILE] = schedulerManifestFile(scheduledQueues(registry));
  kubernetes[GATEWAY_FILE] = gatewayManifestFile(
    deployedFunctions(registry).map(({ queue }) => queue),
    registry.emitters.get(GATEWAY_USER),
  );
  kubernetes["kustomization.yaml"] = functionsKustomization(
    deployedFunctions(registry).map(({ name }) => name),
    [SCHEDULER_FILE, GATEWAY_FILE],
  );
  for (const [path, text] of Object.entries(kubernetes)) {
    files.set(`${FUNCTIONS_DIR}/${path}`, text);
  }

  const deployed = new Set(deployedFunctions(registry).map(({ name }) => name));
  const stale: string[] = [];
  for (const entry of await project.list(FUNCTIONS_DIR)) {
    const path = `${FUNCTIONS_DIR}/${entry.name}`;
    if (!entry.isDirectory) {
      if (!files.has(path) && (await project.read(path))?.startsWith(GENERATED_MARK)) {
        stale.push(path);
      }
      continue;
    }
    if (deployed.has(entry.name)) {
      for (const inner of await project.list(path)) {
        if (!files.has(`${path}/${inner.name}`)) stale.push(`${path}/${inner.name}`);
      }
    } else if ((await project.read(`${path}/kustomization.yaml`))?.startsWith(GENERATED_MARK)) {
      stale.push(path);
    }
  }
  return { files, stale };
}

/**
 * Where the project's files differ from `generated`, one line each naming
 * the file and the command that fixes it; none when they agree.
 */
export async function staleManifests(
  generated: GeneratedManifests,
  project: ProjectReader,
): Promise<string[]> {
  const problems: string[] = [];
  for (const [path, text] of generated.files) {
    const found = await project.read(path);
    if (found === text) continue;
    problems.push(
      `${path} ${
        found === undefined ? "is missing" : "differs from what functions/registry.yaml makes"
      }: run 'deno task manifests' (and edit the registry, not the generated parts)`,
    );
  }
  for (const path of generated.stale) {
    problems.push(
      `${path} belongs to no function of functions/registry.yaml: run 'deno task manifests', which deletes it`,
    );
  }
  return problems;
}

/** A {@linkcode ProjectReader} of the files under `root`. */
export function projectAt(root: URL): ProjectReader {
  return {
    async read(path) {
      try {
        return await Deno.readTextFile(new URL(path, root));
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return undefined;
        throw error;
      }
    },
    async list(path) {
      const entries: { name: string; isDirectory: boolean }[] = [];
      try {
        for await (const entry of Deno.readDir(new URL(path, root))) {
          entries.push({ name: entry.name, isDirectory: entry.isDirectory });
        }
      } catch (error) {
        if (error instanceof Deno.errors.NotFound) return [];
        throw error;
      }
      return entries.sort((a, b) => a.name.localeCompare(b.name));
    },
  };
}
