/**
 * One Docker engine, many suites at once (`deno test --parallel`): a
 * compose project shares the engine with others, but a swarm changes the
 * engine under them (its networks, the gateway bridge, published ports), so
 * the swarm suite holds it alone. The cluster suite holds it alone too: its
 * three brokers, killed in turn under load, take both cores of a small
 * machine, and a suite beside it timed out (twice in CI). Suites that load
 * the host's broker hard (a 10,000-call fan-out) hold it shared, so they
 * never run beside the cluster either. A file lock (flock) works across the
 * test processes and within one.
 */

const LOCK_FILE = `${Deno.env.get("TMPDIR") ?? "/tmp"}/deno-task-system-docker-engine.lock`;

/**
 * Waits until the engine can be held `shared` (with other compose
 * projects) or `exclusive` (alone), and holds it until disposed.
 */
export async function holdEngine(mode: "shared" | "exclusive"): Promise<AsyncDisposable> {
  const file = await Deno.open(LOCK_FILE, { create: true, write: true });
  await file.lock(mode === "exclusive");
  return {
    async [Symbol.asyncDispose]() {
      await file.unlock();
      file.close();
    },
  };
}
