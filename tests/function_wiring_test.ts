/**
 * A function is named in its module and in functions/registry.yaml only:
 * every deployment file's part that names the functions is what the
 * registry makes (`deno task manifests`), regenerated here in memory, and
 * every module defines the name and queue of its entry. Unit: no broker,
 * no Docker.
 */

import assert from "node:assert/strict";
import { addFunction } from "../ops/scaffold/add_function.ts";
import {
  FUNCTIONS_DIR,
  GENERATED_FILES,
  generateManifests,
  projectAt,
  type ProjectReader,
  readRegistry,
  staleManifests,
} from "../ops/manifests/generate.ts";
import { closingMarker } from "../ops/manifests/marked_blocks.ts";

const ROOT = new URL("../", import.meta.url);
const project = projectAt(ROOT);

/** The project with some files replaced (a text) or removed (`undefined`), read from memory. */
function overlay(changes: Record<string, string | undefined>): ProjectReader {
  return {
    read: (path) =>
      Object.hasOwn(changes, path) ? Promise.resolve(changes[path]) : project.read(path),
    list: project.list,
  };
}

async function problemsOf(reader: ProjectReader): Promise<string[]> {
  return staleManifests(await generateManifests(await readRegistry(reader), reader), reader);
}

Deno.test("every deployment file's functions are what functions/registry.yaml makes", async () => {
  const problems = await problemsOf(project);
  assert.deepEqual(problems, [], `\n${problems.join("\n")}`);
});

Deno.test("every function's module defines the name and queue of its registry entry, and no other module is there", async () => {
  const registry = await readRegistry(project);
  const native = [...registry.functions.values()].filter((entry) => entry.protocol === "native");
  for (const entry of native) {
    const { default: fn } = await import(new URL(`functions/${entry.name}.ts`, ROOT).href);
    assert.equal(fn.name, entry.name, `functions/${entry.name}.ts defines ${entry.name}`);
    assert.equal(fn.queue, entry.queue, `functions/${entry.name}.ts consumes ${entry.queue}`);
  }
  const modules = (await project.list("functions")).map(({ name }) => name)
    .filter((name) => name.endsWith(".ts") && !name.endsWith("_test.ts"))
    .map((name) => name.slice(0, -3));
  assert.deepEqual(
    modules.sort(),
    native.map(({ name }) => name).sort(),
    "each module of functions/ has its entry in functions/registry.yaml: add it, or run 'deno task new'",
  );
});

Deno.test("the wiring check names each file a hand edit or a registry change left behind, and the command", async () => {
  const compose = (await project.read("compose.yaml"))!;
  const edited = compose.replace(
    `  ${closingMarker("workers")}`,
    "  worker-z:\n    image: x\n" + `  ${closingMarker("workers")}`,
  );
  assert.notEqual(edited, compose);
  assert.deepEqual(await problemsOf(overlay({ "compose.yaml": edited })), [
    "compose.yaml differs from what functions/registry.yaml makes: run 'deno task manifests' (and edit the registry, not the generated parts)",
  ]);

  // A function added to the registry by hand, its files not yet generated.
  const added = addFunction(
    (await project.read("functions/registry.yaml"))!,
    (await project.read("test-config.yml"))!,
    { name: "wiring_probe", queue: "wiring_probe_q" },
  );
  const problems = await problemsOf(overlay({ "functions/registry.yaml": added.registryText }));
  for (const file of GENERATED_FILES) {
    assert.ok(problems.some((p) => p.startsWith(`${file} differs`)), `${file}: ${problems}`);
  }
  assert.ok(
    problems.includes(
      `${FUNCTIONS_DIR}/wiring_probe/deployment.yaml is missing: run 'deno task manifests' (and edit the registry, not the generated parts)`,
    ),
    problems.join("\n"),
  );

  // A function removed from the registry: its generated directory is left over.
  const registry = (await project.read("functions/registry.yaml"))!;
  const withoutB = registry.replace(/\n {2}task_b:\n(?: {4}.*\n)+/, "\n");
  assert.notEqual(withoutB, registry);
  assert.ok(
    (await problemsOf(overlay({ "functions/registry.yaml": withoutB }))).includes(
      `${FUNCTIONS_DIR}/task_b belongs to no function of functions/registry.yaml: run 'deno task manifests', which deletes it`,
    ),
  );
});

Deno.test("the wiring check refuses a file whose generated block lost its markers, naming the fix", async () => {
  const stack = (await project.read("stack.yaml"))!;
  await assert.rejects(
    problemsOf(overlay({ "stack.yaml": stack.replace(`  ${closingMarker("secrets")}\n`, "") })),
    /^TypeError: Cannot generate the 'secrets' block of stack\.yaml as its markers .* are missing: restore them from git$/,
  );
});

Deno.test("deno task lock:worker caches every function without naming one", async () => {
  const config = JSON.parse((await project.read("deno.json"))!);
  const command: string = config.tasks["lock:worker"].command;
  assert.ok(command.split(" ").includes("functions/*.ts"), command);
  const registry = await readRegistry(project);
  for (const name of registry.functions.keys()) {
    assert.ok(!command.includes(name), `lock:worker names ${name}`);
  }
});
