/**
 * `deno task manifests`: makes every deployment file's part that names the
 * functions from functions/registry.yaml (see `generate.ts`), writes the
 * files that changed and deletes what belongs to a function that is gone.
 * `--check` writes nothing and exits 1 when a file is out of date.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ConfigError } from "../../core/config_error.ts";
import {
  FUNCTIONS_DIR,
  generateManifests,
  projectAt,
  readRegistry,
  staleManifests,
} from "./generate.ts";

const HELP = `Usage: deno task manifests [--check]

Writes what functions/registry.yaml makes of the deployment files: the
worker services, password secrets and secrets-init users of compose.yaml,
the workers of compose.cluster.yaml and stack.yaml (between their
'# >>> ... generated' markers), and ops/kubernetes/functions/. Deletes the
generated files of functions no longer in the registry.

Options:
  --check      write nothing: list the files that are out of date, exit 1 if any
  -h, --help   show this help

Exit codes:
  0  written (or, with --check, every file up to date)
  1  with --check: a file is out of date
  2  the registry has a problem, or a file lost its markers
  70 a bug: an unexpected error, printed with its stack to report`;

/** Where the tool prints; replaced in tests. */
export interface ManifestsIo {
  out(line: string): void;
  err(line: string): void;
}

/**
 * Writes the generated files of the project at `root`; resolves with the
 * changed paths. The same code as `deno task new` runs after adding a function.
 */
export async function writeManifests(
  root: URL,
): Promise<{ written: string[]; deleted: string[] }> {
  const project = projectAt(root);
  const generated = await generateManifests(await readRegistry(project), project);
  const written: string[] = [];
  for (const [path, text] of generated.files) {
    if ((await project.read(path)) === text) continue;
    const url = new URL(path, root);
    // Only a function's new directory: the task may write nowhere else.
    if (path.startsWith(`${FUNCTIONS_DIR}/`)) {
      await Deno.mkdir(new URL(".", url), { recursive: true });
    }
    await Deno.writeTextFile(url, text);
    written.push(path);
  }
  for (const path of generated.stale) {
    await Deno.remove(new URL(path, root), { recursive: true });
  }
  return { written, deleted: generated.stale };
}

/** Runs the command line against the project at `root`; resolves with the exit code. */
export async function main(
  args: string[],
  root: URL = new URL("../../", import.meta.url),
  io: ManifestsIo = { out: (line) => console.log(line), err: (line) => console.error(line) },
): Promise<number> {
  try {
    let values;
    try {
      ({ values } = parseArgs({
        args,
        strict: true,
        options: { check: { type: "boolean" }, help: { type: "boolean", short: "h" } },
      }));
    } catch (error) {
      io.err(
        `deno task manifests: Cannot read the options: ${
          (error as Error).message
        }. See 'deno task manifests --help'`,
      );
      return 2;
    }
    if (values.help) {
      io.out(HELP);
      return 0;
    }
    if (values.check) {
      const project = projectAt(root);
      const generated = await generateManifests(await readRegistry(project), project);
      const problems = await staleManifests(generated, project);
      for (const problem of problems) io.err(problem);
      if (problems.length === 0) {
        io.out("Every deployment file agrees with functions/registry.yaml");
      }
      return problems.length === 0 ? 0 : 1;
    }
    const { written, deleted } = await writeManifests(root);
    for (const path of deleted) io.out(`deleted  ${path}`);
    for (const path of written) io.out(`wrote    ${path}`);
    if (written.length === 0 && deleted.length === 0) {
      io.out("Every deployment file already agrees with functions/registry.yaml");
    }
    return 0;
  } catch (error) {
    if (error instanceof ConfigError || error instanceof TypeError || error instanceof RangeError) {
      io.err(`deno task manifests: ${(error as Error).message}`);
      return 2;
    }
    io.err(
      `Bug: deno task manifests stopped on an unexpected error (exit 70). Please report it with what follows:\n${
        error instanceof Error ? error.stack : String(error)
      }`,
    );
    return 70;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
