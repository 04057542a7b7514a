import assert from "node:assert/strict";
import { withTempDir } from "../../tests/_temp_dir.ts";
import { checkOutputPath, OutputPathError, writeOutput } from "./output_files.ts";

Deno.test("checkOutputPath() makes missing folders and leaves no file behind", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/a/b/report.xml`;
    await checkOutputPath(path, "--junit");
    assert.ok((await Deno.stat(`${dir}/a/b`)).isDirectory, "the folder was made");
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
  });
});

Deno.test("checkOutputPath() leaves an existing file as it was", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/run.json`;
    await Deno.writeTextFile(path, "earlier run");
    await checkOutputPath(path, "--out");
    assert.equal(await Deno.readTextFile(path), "earlier run");
  });
});

Deno.test("checkOutputPath() refuses a folder, naming the flag, the path, why and the fix", async () => {
  await withTempDir(async (dir) => {
    const error = await checkOutputPath(dir, "--html").catch((e) => e);
    assert.ok(error instanceof OutputPathError);
    assert.equal(error.flag, "--html");
    assert.equal(error.path, dir);
    assert.equal(
      error.message,
      `Cannot write --html '${dir}' as it is a folder: name a file in it, such as ${dir}/report`,
    );
  });
});

Deno.test("checkOutputPath() refuses a path under a file, or in a place nobody may write", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/file`, "");
    const underFile = await checkOutputPath(`${dir}/file/report.xml`, "--junit").catch((e) => e);
    assert.ok(underFile instanceof OutputPathError);
    assert.match(
      underFile.message,
      new RegExp(
        `^Cannot write --junit '${dir}/file/report\\.xml' as its folder '${dir}/file' cannot be made: .+: choose a path in a folder you may write$`,
      ),
    );
  });
  // /proc refuses new files even to root.
  const proc = await checkOutputPath("/proc/report.xml", "--out").catch((e) => e);
  assert.ok(proc instanceof OutputPathError, String(proc));
  assert.match(proc.message, /^Cannot write --out '\/proc\/report\.xml': .+: choose /);
});

Deno.test("checkOutputPath() refuses a path outside this process's write permission", {
  permissions: { read: true, write: ["/tmp/allowed-only"] },
}, async () => {
  const error = await checkOutputPath("/tmp/elsewhere/report.xml", "--junit").catch((e) => e);
  assert.ok(error instanceof OutputPathError);
  assert.match(
    error.message,
    /^Cannot write --junit '\/tmp\/elsewhere\/report\.xml' as this process may not write there \(Deno's --allow-write does not cover it\): .*--allow-write=\/tmp\/elsewhere\/report\.xml/,
  );
});

Deno.test("checkOutputPath() refuses an empty path", async () => {
  await assert.rejects(checkOutputPath("", "--out"), /Cannot use --out '': give a file path/);
});

Deno.test("writeOutput() writes, making folders, and names the flag when it cannot", async () => {
  await withTempDir(async (dir) => {
    await writeOutput(`${dir}/x/y.json`, "{}", "--out");
    assert.equal(await Deno.readTextFile(`${dir}/x/y.json`), "{}");
    await assert.rejects(
      writeOutput(dir, "{}", "--out"),
      (error: Error) =>
        error instanceof OutputPathError && error.message.startsWith(`Cannot write --out '${dir}'`),
    );
  });
});
