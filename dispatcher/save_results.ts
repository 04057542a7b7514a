/**
 * Writes a run's figures as JSON under `results/` (git-ignored), named by
 * kind and time, so runs can be compared later.
 *
 * @module
 */

/** A file name stamp such as `20261122T070812Z`, sortable and safe on every OS. */
export function timestamp(date = new Date()): string {
  return date.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
}

/**
 * Saves `document` to `out`, or else to `results/<kind>_<timestamp>.json`,
 * creating the folder; resolves with the path written.
 */
export async function saveResults(
  kind: string,
  document: unknown,
  out?: string,
): Promise<string> {
  const path = out ?? `results/${kind}_${timestamp()}.json`;
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(path, JSON.stringify(document, null, 2) + "\n");
  return path;
}
