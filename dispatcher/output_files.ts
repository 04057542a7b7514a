/**
 * Where a run's files go: the JSON document by default to
 * `results/dispatch_<timestamp>.json`, and any `--out`, `--junit` or
 * `--html` path. Paths are checked against this process's write permission
 * before anything is sent, so a path it may not write fails at once, not
 * after the run.
 *
 * @module
 */

import { dirname } from "node:path";

/** The folder `deno task dispatch` may write to. */
export const RESULTS_DIR = "results";

/** The default file of a run's JSON document: `results/dispatch_2026-11-22T06-42-58.123Z.json`. */
/** Where a run of `kind` (dispatch, load, bench) saves its JSON document by default. */
export function defaultResultsPath(kind: string, time: Date): string {
  return `${RESULTS_DIR}/${kind}_${time.toISOString().replace(/:/g, "-")}.json`;
}

/**
 * Throws a `TypeError` saying how to fix it when this process may not write
 * `path` (as `deno task dispatch` may only write under `results/`).
 */
export function checkWritable(path: string, what: string): void {
  const { state } = Deno.permissions.querySync({ name: "write", path });
  if (state === "granted") return;
  throw new TypeError(
    `Cannot write ${what} '${path}' as this process may only write where --allow-write lets it (deno task dispatch: under ${RESULTS_DIR}/): use a path such as ${RESULTS_DIR}/${
      path.split("/").pop()
    }, or run 'deno run --allow-write=${path} ...' yourself`,
  );
}

/** Writes `text` to `path`, creating its folder; throws a `TypeError` saying why it could not. */
export async function writeOutput(path: string, text: string): Promise<void> {
  try {
    await Deno.mkdir(dirname(path), { recursive: true });
    await Deno.writeTextFile(path, text);
  } catch (error) {
    throw new TypeError(`Cannot write '${path}': ${(error as Error).message}`, { cause: error });
  }
}
