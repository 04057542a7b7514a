/**
 * The worker as a container: builds the task_a image, and runs it on the
 * host network against the benchmark's broker (`worker_start.ts` times its
 * start, `scale_out.ts` runs replicas of it).
 *
 * @module
 */

/**
 * The worker image's own command, but for the broker's address: a container
 * on the host network reaches the host's RabbitMQ, which its image's
 * `--allow-net` does not name.
 */
function hostNetworkCommand(broker: URL): string[] {
  return [
    "run",
    "--cached-only",
    "--no-prompt",
    "--unstable-worker-options",
    `--allow-net=${broker.hostname}:${broker.port || 5672}`,
    "--allow-env",
    "--allow-read=/app/functions,/app/runtime,/app/core",
    "--allow-sys=hostname",
    "runtime/process/main.ts",
    "/app/functions/function.ts",
  ];
}

/**
 * `docker run` of one worker container of `tag` on the host network,
 * consuming `queue` of the broker at `url` (the first, when it lists
 * several), detached; `options` go before the image.
 */
export function workerRunArgs(
  tag: string,
  url: string,
  queue: string,
  options: string[] = [],
): string[] {
  const broker = new URL(url.split(",")[0]);
  return [
    "run",
    "-d",
    ...options,
    "--network",
    "host",
    "-e",
    `AMQP_URL=${url}`,
    "-e",
    `QUEUE=${queue}`,
    tag,
    ...hostNetworkCommand(broker),
  ];
}

/** Runs the docker CLI: its standard output when it has any, else its errors. */
export async function docker(args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const output = await new Deno.Command("docker", { args, stdout: "piped", stderr: "piped" })
      .output();
    const out = new TextDecoder().decode(output.stdout).trim();
    return { ok: output.success, out: out || new TextDecoder().decode(output.stderr) };
  } catch {
    return { ok: false, out: "docker is not installed" };
  }
}

/** Builds task_a's worker image as `tag`, from the base image the environment names. */
export async function buildWorkerImage(tag: string): Promise<void> {
  const image = Deno.env.get("DENO_IMAGE");
  const build = await docker([
    "build",
    "-q",
    "-f",
    "Dockerfile.worker",
    "--build-arg",
    "FUNCTION=task_a",
    ...(image ? ["--build-arg", `DENO_IMAGE=${image}`] : []),
    "-t",
    tag,
    ".",
  ]);
  if (!build.ok) {
    // The build's last lines say what failed; the rest is progress.
    const tail = build.out.trim().split("\n").slice(-3).join(" | ");
    throw new Error(
      `Cannot build the worker image from Dockerfile.worker (${tail}): set DENO_IMAGE to a Deno image this Docker engine has, or pass --no-container`,
    );
  }
}
