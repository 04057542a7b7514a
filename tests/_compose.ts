/**
 * Brings up the stack of compose.yaml under a project name and ports of its
 * own, so tests never touch a stack or broker already running here.
 *
 * @module
 */

import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import type { Broker } from "../core/broker/mod.ts";
import { type CommandOutput, docker, type DockerOptions, readSecret } from "./_docker.ts";
import { freePort, uniqueName, waitFor } from "./_helpers.ts";

export { docker };

/** The parts of `docker inspect` the tests read. */
export interface ContainerInfo {
  Name: string;
  Config: { User: string; Image: string; Hostname: string };
  HostConfig: { ReadonlyRootfs: boolean; CapDrop: string[] | null; SecurityOpt: string[] | null };
  State: { Running: boolean; ExitCode: number; Status: string };
}

/** A compose project of this repository's compose.yaml (and any override files). */
export interface Stack {
  project: string;
  amqpPort: number;
  /**
   * The host ports of each broker node's AMQP and management listeners: one
   * node with compose.yaml alone, three with compose.cluster.yaml.
   */
  nodes: { amqpPort: number; managementPort: number }[];
  /** Where secrets-init keeps this stack's passwords. */
  secretsDir: string;
  /** Variables that point the project's tools at this stack's secrets. */
  env: Record<string, string>;
  /** URL of the stack's broker as seen from the host, as `user`, password included. */
  url(user: "admin" | "dispatcher"): Promise<string>;
  /** `docker compose` on the stack's files; `true` allows failure, as for `docker()`. */
  compose(args: string[], options?: boolean | DockerOptions): Promise<CommandOutput>;
  /** Container ids of a service's replicas. */
  containers(service: string): Promise<string[]>;
  /** `docker inspect` of one container. */
  inspect(id: string): Promise<ContainerInfo>;
  /** `docker compose down -v` and removal of the stack's images. */
  down(): Promise<void>;
}

/** Options for {@linkcode createStack}. */
export interface CreateStackOptions {
  /** Compose files, in order. @default {["compose.yaml"]} */
  files?: string[];
  /** Variables for compose (build arguments, say). */
  env?: Record<string, string>;
}

/**
 * Prepares (does not start) a stack with a unique project name, free ports
 * and a secrets directory of its own; `options.env` adds variables for
 * compose (build arguments, say).
 */
export async function createStack(
  prefix: string,
  options: CreateStackOptions = {},
): Promise<Stack> {
  const project = uniqueName(prefix);
  const files = options.files ?? ["compose.yaml"];
  const nodes = [1, 2, 3].map(() => ({ amqpPort: freePort(), managementPort: freePort() }));
  const amqpPort = nodes[0].amqpPort;
  const secretsDir = await Deno.makeTempDir({ prefix: `${prefix}-secrets-` });
  const env = {
    // The gateway's port, free like the others: two stacks never share 8080.
    GATEWAY_PORT: String(freePort()),
    ...options.env,
    AMQP_PORT: String(amqpPort),
    MANAGEMENT_PORT: String(nodes[0].managementPort),
    // The other nodes of compose.cluster.yaml; compose.yaml alone ignores them.
    AMQP_PORT_2: String(nodes[1].amqpPort),
    MANAGEMENT_PORT_2: String(nodes[1].managementPort),
    AMQP_PORT_3: String(nodes[2].amqpPort),
    MANAGEMENT_PORT_3: String(nodes[2].managementPort),
    COMPOSE_PROJECT_NAME: project,
    SECRETS_DIR: secretsDir,
  };
  const compose = (args: string[], options: boolean | DockerOptions = false) =>
    docker(
      ["compose", "-p", project, ...files.flatMap((file) => ["-f", file]), ...args],
      env,
      options,
    );
  return {
    project,
    amqpPort,
    nodes: files.includes("compose.cluster.yaml") ? nodes : nodes.slice(0, 1),
    secretsDir,
    env: { SECRETS_DIR: secretsDir },
    async url(user) {
      const password = await readSecret(`${secretsDir}/${user}.password`);
      return `amqp://${user}:${encodeURIComponent(password)}@127.0.0.1:${amqpPort}`;
    },
    compose,
    async containers(service) {
      return (await compose(["ps", "-q", service])).stdout.split("\n").filter(Boolean);
    },
    async inspect(id) {
      return JSON.parse((await docker(["inspect", id])).stdout)[0];
    },
    async down() {
      const result = await compose(["down", "-v", "--rmi", "local", "--remove-orphans"], true);
      if (result.code !== 0) console.error(result.text);
      try {
        await Deno.remove(secretsDir, { recursive: true });
        return;
      } catch {
        // secrets-init gave some files to the workers' user: remove them as root.
      }
      await docker(
        [
          "run",
          "--rm",
          "-u",
          "0",
          "-v",
          `${secretsDir}:/s`,
          Deno.env.get("DENO_IMAGE") ?? "denoland/deno:distroless-2.9.6",
          "eval",
          "for (const e of Deno.readDirSync('/s')) Deno.removeSync('/s/' + e.name)",
        ],
        {},
        true,
      );
      await Deno.remove(secretsDir, { recursive: true }).catch(() => {});
    },
  };
}

/** Connects to a stack's broker as soon as it accepts connections. */
export async function connectWhenUp(url: string): Promise<Broker> {
  let broker: Broker | undefined;
  await waitFor(
    async () => {
      broker = await connectAmqp(url, { timeoutMs: 2000 }).catch(() => undefined);
      return broker !== undefined;
    },
    "the broker accepts connections",
    90_000,
    500,
  );
  return broker!;
}
