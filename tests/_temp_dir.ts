/**
 * A temporary folder for a test's files.
 *
 * @module
 */

/** Runs `fn` with a new temporary folder, and removes the folder afterwards. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir();
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
