/**
 * Where a tool's files go: any path the user names (`--out`, `--junit`,
 * `--html`), or by default `results/<kind>_<timestamp>.json`. Each path is
 * checked before anything is sent, so a run is never lost to a path it
 * cannot write: missing folders are made, and a folder, a read-only place or
 * a path outside this process's write permission fails at once, naming the
 * flag, the path, why and the fix.
 *
 * @module
 */

import { dirname } from "node:path";

/** The folder runs save their documents in by default. */
export const RESULTS_DIR = "results";

/** A path a tool cannot write: the tool exits 2. */
export class OutputPathError extends Error {
  /** The flag that named the path, such as `--junit`. */
  readonly flag: string;
  readonly path: string;

  /**
   * @param flag The flag that named the path.
   * @param path The path.
   * @param message Why it cannot be written and how to fix it.
   */
  constructor(flag: string, path: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "OutputPathError";
    this.flag = flag;
    this.path = path;
  }
}

/** Where a run of `kind` (dispatch, load, bench) saves its JSON document by default. */
export function defaultResultsPath(kind: string, time: Date): string {
  return `${RESULTS_DIR}/${kind}_${time.toISOString().replace(/:/g, "-")}.json`;
}

function why(error: unknown): string {
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.NotCapable) return "this process may not write there";
  return (error as Error).message;
}

/**
 * Checks that this process can write `path`, named by `flag`: makes its
 * missing folders, and throws an {@linkcode OutputPathError} saying why and
 * what to do when it cannot. An existing file is left as it is.
 */
export async function checkOutputPath(path: string, flag: string): Promise<void> {
  const cannot = `Cannot write ${flag} '${path}'`;
  if (path === "") throw new OutputPathError(flag, path, `Cannot use ${flag} '': give a file path`);
  if (Deno.permissions.querySync({ name: "write", path }).state !== "granted") {
    throw new OutputPathError(
      flag,
      path,
      `${cannot} as this process may not write there (Deno's --allow-write does not cover it): use the deno task, which may write anywhere, or add --allow-write=${path} to your deno run`,
    );
  }
  let existed = false;
  try {
    const info = await Deno.stat(path);
    existed = true;
    if (info.isDirectory) {
      throw new OutputPathError(
        flag,
        path,
        `${cannot} as it is a folder: name a file in it, such as ${
          path.replace(/\/*$/, "")
        }/report`,
      );
    }
  } catch (error) {
    if (error instanceof OutputPathError) throw error;
    // A file where a folder should be is reported below, as the folder that cannot be made.
    const absent = error instanceof Deno.errors.NotFound ||
      error instanceof Deno.errors.NotADirectory;
    if (!absent) {
      throw new OutputPathError(flag, path, `${cannot}: ${why(error)}: choose another path`, {
        cause: error,
      });
    }
  }
  const folder = dirname(path);
  try {
    await Deno.mkdir(folder, { recursive: true });
  } catch (error) {
    throw new OutputPathError(
      flag,
      path,
      `${cannot} as its folder '${folder}' cannot be made: ${
        error instanceof Deno.errors.AlreadyExists
          ? "a file of that name is in the way"
          : why(error)
      }: choose a path in a folder you may write`,
      { cause: error },
    );
  }
  try {
    // Opening without truncating proves the write without changing anything.
    const file = await Deno.open(path, { write: true, create: true });
    file.close();
    if (!existed) await Deno.remove(path);
  } catch (error) {
    throw new OutputPathError(
      flag,
      path,
      `${cannot}: ${why(error)}: choose a writable location, or fix the permissions of '${folder}'`,
      { cause: error },
    );
  }
}

/** Pieces of text `joinLines` writes with a newline between each two, as `Array.join("\n")`. */
export function* joinLines(parts: Iterable<string>): Generator<string, void, undefined> {
  let first = true;
  for (const part of parts) {
    yield first ? part : `\n${part}`;
    first = false;
  }
}

/** Bytes gathered before each write of a file written in pieces. */
const WRITE_CHUNK_CHARS = 1 << 16;

/**
 * Writes `text` to `path` (named by `flag`), making its folder; an
 * {@linkcode OutputPathError} says why it could not. Text in pieces (the
 * records of a big run) is written as it comes, never held whole.
 */
export async function writeOutput(
  path: string,
  text: string | Iterable<string>,
  flag: string,
): Promise<void> {
  try {
    await Deno.mkdir(dirname(path), { recursive: true });
    if (typeof text === "string") {
      await Deno.writeTextFile(path, text);
      return;
    }
    using file = await Deno.open(path, { write: true, create: true, truncate: true });
    const encoder = new TextEncoder();
    const writeAll = async (chunk: string) => {
      let bytes = encoder.encode(chunk);
      while (bytes.byteLength > 0) bytes = bytes.subarray(await file.write(bytes));
    };
    let pending = "";
    for (const part of text) {
      pending += part;
      if (pending.length >= WRITE_CHUNK_CHARS) {
        await writeAll(pending);
        pending = "";
      }
    }
    if (pending) await writeAll(pending);
  } catch (error) {
    throw new OutputPathError(
      flag,
      path,
      `Cannot write ${flag} '${path}': ${why(error)}: choose another path`,
      { cause: error },
    );
  }
}
