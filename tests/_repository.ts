/**
 * A copy of the repository's files, for tests that change them (`deno task
 * new`, a registry with a schedule) as a user would, without touching the
 * work tree.
 *
 * @module
 */

import assert from "node:assert/strict";
import { runCommand } from "./_command.ts";

const ROOT = new URL("../", import.meta.url);

/** The repository's files (tracked, and new ones not ignored) in a new temporary directory. */
export async function copyRepository(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "repository-copy-" });
  const listed = await runCommand(
    "git",
    ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    { cwd: ROOT.pathname, timeoutMs: 60_000 },
  );
  assert.equal(listed.code, 0, listed.stderr);
  for (const path of listed.stdout.split("\0").filter(Boolean)) {
    const from = new URL(path, ROOT);
    try {
      if (!(await Deno.lstat(from)).isFile) continue;
    } catch {
      continue; // Deleted in the work tree.
    }
    const to = `${dir}/${path}`;
    await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
    await Deno.copyFile(from, to);
  }
  return dir;
}
