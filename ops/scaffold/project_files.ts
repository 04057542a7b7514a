/**
 * The files of the project that name each function, read as text: what
 * `deno task new` edits and what the wiring check compares. Keeping them
 * as text in one object lets the planning and the checks stay pure (no
 * file system), so they are tested without touching the repository.
 *
 * @module
 */

/** The project's files that list the functions, by role. */
export interface ProjectFiles {
  /** test-config.yml */
  testConfig: string;
  /** compose.yaml */
  compose: string;
  /** compose.cluster.yaml */
  composeCluster: string;
  /** stack.yaml */
  stack: string;
  /** deno.json */
  denoJson: string;
}

/** Where each of {@linkcode ProjectFiles} lives, relative to the project's root. */
export const PROJECT_PATHS: Readonly<Record<keyof ProjectFiles, string>> = {
  testConfig: "test-config.yml",
  compose: "compose.yaml",
  composeCluster: "compose.cluster.yaml",
  stack: "stack.yaml",
  denoJson: "deno.json",
};

/** Reads every file of {@linkcode PROJECT_PATHS} under `root`. */
export async function readProjectFiles(root: URL): Promise<ProjectFiles> {
  const entries = await Promise.all(
    Object.entries(PROJECT_PATHS).map(async ([key, path]) => {
      try {
        return [key, await Deno.readTextFile(new URL(path, root))] as const;
      } catch (error) {
        throw new TypeError(
          `Cannot read ${path} (${(error as Error).message}): run this from the project's root`,
          { cause: error },
        );
      }
    }),
  );
  return Object.fromEntries(entries) as unknown as ProjectFiles;
}

/** The compose service of a function's workers: `worker-` and its name, `_` as `-`. */
export function workerServiceOf(name: string): string {
  return `worker-${name.replaceAll("_", "-")}`;
}

/** The compose and Swarm secret of a function's worker password. */
export function passwordSecretOf(name: string): string {
  return `${name}_password`;
}

/** The broker nodes of compose.cluster.yaml, in order. */
export const CLUSTER_NODES = ["rabbitmq", "rabbitmq-2", "rabbitmq-3"] as const;

/**
 * The AMQP_URL of a function's workers on the cluster: every node, starting
 * from the `index`-th (the functions' order), so that the workers spread
 * over the nodes and one node's loss takes only some of them along.
 */
export function clusterUrlOf(name: string, index: number): string {
  const nodes = CLUSTER_NODES.map((_, i) => CLUSTER_NODES[(index + i) % CLUSTER_NODES.length]);
  return nodes.map((node) => `amqp://${name}@${node}:5672`).join(",");
}
