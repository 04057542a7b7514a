/**
 * Brings up the stack of compose.yaml under a project name and ports of its
 * own, so tests never touch a stack or broker already running here.
 *
 * @module
 */

import { connectAmqp } from "../functions/_runtime/amqp_broker.ts";
import type { Broker } from "../functions/_runtime/broker.ts";
import { freePort, uniqueName, waitFor } from "./_infra.ts";

const ROOT = new URL("../", import.meta.url);
const decoder = new TextDecoder();

/** The outcome of a `docker` command. */
export interface DockerResult {
  code: number;
  stdout: string;
  /** stdout and stderr together, for messages. */
  text: string;
}

/** Runs `docker <args>` in the project root; throws with its output unless it succeeds. */
export async function docker(
  args: string[],
  env: Record<string, string> = {},
  allowFailure = false,
): Promise<DockerResult> {
  const output = await new Deno.Command("docker", {
    args,
    cwd: ROOT,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = decoder.decode(output.stdout).trim();
  const text = `${stdout}\n${decoder.decode(output.stderr)}`;
  if (!output.success && !allowFailure) {
    throw new Error(`docker ${args.join(" ")} failed (${output.code}):\n${text}`);
  }
  return { code: output.code, stdout, text };
}

/** The parts of `docker inspect` the tests read. */
export interface ContainerInfo {
  Name: string;
  Config: { User: string; Image: string; Hostname: string };
  HostConfig: { ReadonlyRootfs: boolean; CapDrop: string[] | null; SecurityOpt: string[] | null };
  State: { Running: boolean; ExitCode: number; Status: string };
}

/** A compose project of this repository's compose.yaml. */
export interface Stack {
  project: string;
  amqpPort: number;
  /** URL of the stack's broker as seen from the host. */
  amqpUrl: string;
  compose(args: string[], allowFailure?: boolean): Promise<DockerResult>;
  /** Container ids of a service's replicas. */
  containers(service: string): Promise<string[]>;
  /** `docker inspect` of one container. */
  inspect(id: string): Promise<ContainerInfo>;
  /** `docker compose down -v` and removal of the stack's images. */
  down(): Promise<void>;
}

/** Prepares (does not start) a stack with a unique project name and free ports. */
export function createStack(prefix: string): Stack {
  const project = uniqueName(prefix);
  const amqpPort = freePort();
  const env = {
    AMQP_PORT: String(amqpPort),
    MANAGEMENT_PORT: String(freePort()),
    COMPOSE_PROJECT_NAME: project,
  };
  const compose = (args: string[], allowFailure = false) =>
    docker(["compose", "-p", project, ...args], env, allowFailure);
  return {
    project,
    amqpPort,
    amqpUrl: `amqp://guest:guest@127.0.0.1:${amqpPort}`,
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
