import assert from "node:assert/strict";
import { withTempDir } from "../../tests/_temp_dir.ts";
import { main } from "./main.ts";
import { closingMarker, openingMarker, replaceMarkedBlocks } from "./marked_blocks.ts";

const ROOT = new URL("../../", import.meta.url);
const FILES = ["functions/registry.yaml", "compose.yaml", "compose.cluster.yaml", "stack.yaml"];

/** The project's registry and deployment files, copied under `dir`. */
async function copyProject(dir: string): Promise<URL> {
  const root = new URL(`file://${dir}/`);
  for (const path of FILES) {
    await Deno.mkdir(new URL(".", new URL(path, root)), { recursive: true });
    await Deno.copyFile(new URL(path, ROOT), new URL(path, root));
  }
  return root;
}

async function run(args: string[], root: URL) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, root, { out: (l) => out.push(l), err: (l) => err.push(l) });
  return { code, out, err };
}

Deno.test("deno task manifests writes what the registry makes, and --check says when it is out of date", async () => {
  await withTempDir(async (dir) => {
    const root = await copyProject(dir);
    // No Kubernetes files yet: --check lists them, writes nothing.
    const before = await run(["--check"], root);
    assert.equal(before.code, 1);
    assert.ok(
      before.err.includes(
        "ops/kubernetes/functions/task_a/deployment.yaml is missing: run 'deno task manifests' (and edit the registry, not the generated parts)",
      ),
      before.err.join("\n"),
    );
    await assert.rejects(Deno.stat(`${dir}/ops/kubernetes/functions`), Deno.errors.NotFound);

    const written = await run([], root);
    assert.equal(written.code, 0, written.err.join("\n"));
    assert.ok(written.out.includes("wrote    ops/kubernetes/functions/task_a/deployment.yaml"));
    assert.ok(!written.out.some((line) => line.includes("compose.yaml")), "already up to date");
    assert.deepEqual((await run(["--check"], root)).code, 0);

    // A function gone from the registry: its files go, its workers leave compose.yaml.
    const registry = await Deno.readTextFile(`${dir}/functions/registry.yaml`);
    await Deno.writeTextFile(
      `${dir}/functions/registry.yaml`,
      registry.replace(/\n {2}task_b:\n(?: {4}.*\n)+/, "\n"),
    );
    await Deno.mkdir(`${dir}/ops/kubernetes/functions/hand_made`);
    await Deno.writeTextFile(`${dir}/ops/kubernetes/functions/hand_made/x.yaml`, "kind: Mine\n");
    const removed = await run([], root);
    assert.equal(removed.code, 0, removed.err.join("\n"));
    assert.ok(
      removed.out.includes("deleted  ops/kubernetes/functions/task_b"),
      removed.out.join("\n"),
    );
    assert.ok(removed.out.includes("wrote    compose.yaml"));
    await assert.rejects(Deno.stat(`${dir}/ops/kubernetes/functions/task_b`), Deno.errors.NotFound);
    assert.ok((await Deno.stat(`${dir}/ops/kubernetes/functions/hand_made/x.yaml`)).isFile);
    assert.doesNotMatch(await Deno.readTextFile(`${dir}/compose.yaml`), /task_b/);
    assert.doesNotMatch(await Deno.readTextFile(`${dir}/stack.yaml`), /task_b/);
  });
});

Deno.test("deno task manifests exits 2 naming the registry's problem, and writes nothing", async () => {
  await withTempDir(async (dir) => {
    const root = await copyProject(dir);
    await Deno.writeTextFile(`${dir}/functions/registry.yaml`, "functions:\n  task_a: {}\n");
    const compose = await Deno.readTextFile(`${dir}/compose.yaml`);
    const result = await run([], root);
    assert.equal(result.code, 2);
    assert.deepEqual(result.err, [
      "deno task manifests: Cannot use functions/registry.yaml as it has 1 problem:\nfunctions/registry.yaml:2:11: functions.task_a: has no 'queue': name the queue task_a consumes, such as queue_a",
    ]);
    assert.equal(await Deno.readTextFile(`${dir}/compose.yaml`), compose);
  });
});

Deno.test("replaceMarkedBlocks() rewrites only between the markers, indented as the opening one", () => {
  const text = [
    "services:",
    "  kept: 1",
    `  ${openingMarker("workers")}`,
    "  old: 1",
    `  ${closingMarker("workers")}`,
    "  after: 2",
  ].join("\n");
  assert.equal(
    replaceMarkedBlocks(text, "f.yaml", { workers: ["a:", "  b: 1", "", "c: 2"] }),
    [
      "services:",
      "  kept: 1",
      `  ${openingMarker("workers")}`,
      "  a:",
      "    b: 1",
      "",
      "  c: 2",
      `  ${closingMarker("workers")}`,
      "  after: 2",
    ].join("\n"),
  );
  assert.throws(
    () => replaceMarkedBlocks("services:\n", "f.yaml", { workers: [] }),
    /^TypeError: Cannot generate the 'workers' block of f\.yaml as its markers/,
  );
});

Deno.test("a function's concurrency in the registry reaches its workers in compose, Swarm and Kubernetes alike", async () => {
  await withTempDir(async (dir) => {
    const root = await copyProject(dir);
    const registry = await Deno.readTextFile(`${dir}/functions/registry.yaml`);
    await Deno.writeTextFile(
      `${dir}/functions/registry.yaml`,
      registry.replace("    service: worker-b\n", "    service: worker-b\n    concurrency: 1\n"),
    );
    const written = await run([], root);
    assert.equal(written.code, 0, written.err.join("\n"));
    const workerB = (text: string) =>
      text.slice(text.indexOf("worker-b:"), text.indexOf("secrets:", text.indexOf("worker-b:")));
    for (const file of ["compose.yaml", "stack.yaml"]) {
      const text = await Deno.readTextFile(`${dir}/${file}`);
      assert.match(workerB(text), /^ {6}CONCURRENCY: "1"$/m, file);
      assert.doesNotMatch(
        workerB(text.replace(/worker-b:/, "")),
        /CONCURRENCY/,
        `${file}: only task_b's`,
      );
    }
    const deployment = await Deno.readTextFile(
      `${dir}/ops/kubernetes/functions/task_b/deployment.yaml`,
    );
    assert.match(deployment, /- name: CONCURRENCY\n {14}value: "1"/);
    const other = await Deno.readTextFile(`${dir}/ops/kubernetes/functions/task_a/deployment.yaml`);
    assert.doesNotMatch(other, /CONCURRENCY/, "task_a keeps the worker's default");
  });
});
