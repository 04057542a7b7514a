/**
 * Docker and compose helpers for end-to-end tests: run commands, read what
 * compose.yaml and Dockerfile.worker say, so that tests derive their
 * expectations from those files instead of repeating them.
 *
 * @module
 */

import assert from "node:assert/strict";
import { parse } from "yaml";
import { runCommand } from "./_command.ts";

const ROOT = new URL("../", import.meta.url);

/** The output of a finished command. */
export interface CommandOutput {
  code: number;
  /** stdout and stderr together. */
  text: string;
  stdout: string;
}

/**
 * How long {@linkcode docker} lets a command run by default: an image build
 * or a stack start on a loaded machine takes minutes, a hang forever.
 */
export const DOCKER_TIMEOUT_MS = 600_000;

/** Options for {@linkcode docker}. */
export interface DockerOptions {
  /** Return a failed command's output instead of throwing. @default {false} */
  allowFailure?: boolean;
  /** How long it may run before it is killed and the test fails. @default {DOCKER_TIMEOUT_MS} */
  timeoutMs?: number;
}

/**
 * Runs `docker <args>` in the project root; fails with its output unless it
 * succeeds or failure is allowed (`true` or `{ allowFailure: true }`), and
 * with a `DeadlineError` naming it if it outlives its deadline.
 */
export async function docker(
  args: string[],
  env: Record<string, string> = {},
  options: boolean | DockerOptions = false,
): Promise<CommandOutput> {
  const { allowFailure = false, timeoutMs = DOCKER_TIMEOUT_MS } = typeof options === "boolean"
    ? { allowFailure: options }
    : options;
  const output = await runCommand("docker", args, { cwd: ROOT, env, timeoutMs });
  const stdout = output.stdout;
  const text = stdout + output.stderr;
  if (output.code !== 0 && !allowFailure) {
    throw new Error(`docker ${args.join(" ")} failed (${output.code}):\n${text}`);
  }
  return { code: output.code, text, stdout: stdout.trim() };
}

/** compose.yaml, with YAML merge keys resolved. */
// deno-lint-ignore no-explicit-any
export async function readComposeFile(): Promise<any> {
  return parse(await Deno.readTextFile(new URL("compose.yaml", ROOT)), { merge: true });
}

/** The worker image's command (Dockerfile.worker's exec-form CMD). */
export async function workerCommand(): Promise<string[]> {
  const dockerfile = await Deno.readTextFile(new URL("Dockerfile.worker", ROOT));
  const match = dockerfile.match(/^CMD (\[[\s\S]*?\])$/m);
  assert.ok(match, "Dockerfile.worker has an exec-form CMD");
  return JSON.parse(match[1].replace(/\\\n/g, ""));
}

/** Reads a secret file, through a root container when it belongs to the workers' user. */
export async function readSecret(path: string): Promise<string> {
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch (error) {
    if (!(error instanceof Deno.errors.PermissionDenied)) throw error;
    const dir = path.replace(/\/[^/]+$/, "");
    const name = path.slice(dir.length + 1);
    const image = Deno.env.get("DENO_IMAGE") ?? "denoland/deno:distroless-2.9.6";
    const script = `console.log(Deno.readTextFileSync("/s/${name}").trim())`;
    const out = await docker([
      "run",
      "--rm",
      "-u",
      "0",
      "-v",
      `${dir}:/s:ro`,
      image,
      "eval",
      script,
    ]);
    return out.stdout;
  }
}
