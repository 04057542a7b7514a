/**
 * Every file that names the functions agrees with test-config.yml (unit:
 * no broker, no Docker), and the checks catch a hand edit that forgets one.
 */

import assert from "node:assert/strict";
import { parseDocument } from "yaml";
import { checkWiring, type ReadText } from "../ops/scaffold/check_wiring.ts";
import { functionsOf, planNewFunction } from "../ops/scaffold/plan_new_function.ts";
import { readProjectFiles } from "../ops/scaffold/project_files.ts";
import { functionManifestFiles } from "../ops/kubernetes/function_manifests.ts";
import { functionModule } from "../ops/scaffold/templates.ts";

const ROOT = new URL("../", import.meta.url);

const readRepo: ReadText = async (path) => {
  try {
    return await Deno.readTextFile(new URL(path, ROOT));
  } catch {
    return undefined;
  }
};

Deno.test("every file that names the functions agrees with test-config.yml", async () => {
  const files = await readProjectFiles(ROOT);
  assert.deepEqual(await checkWiring(files, readRepo), []);
  for (const [name, queue] of functionsOf(files.testConfig)) {
    const { default: fn } = await import(new URL(`functions/${name}.ts`, ROOT).href);
    assert.equal(fn.name, name, `functions/${name}.ts defines ${name}`);
    assert.equal(fn.queue, queue, `functions/${name}.ts consumes ${queue}`);
  }
});

/** The repository's files with `fn` added as `deno task new` adds it, read from memory. */
async function withNewFunction(name: string) {
  const files = await readProjectFiles(ROOT);
  const plan = planNewFunction(files, { name, queue: `${name}_q` });
  const extra = new Map<string, string>([[
    `functions/${name}.ts`,
    functionModule({ name, queue: `${name}_q` }),
  ]]);
  for (const [file, text] of Object.entries(functionManifestFiles({ name, queue: `${name}_q` }))) {
    extra.set(`ops/kubernetes/functions/${name}/${file}`, text);
  }
  const read: ReadText = (path) =>
    extra.has(path) ? Promise.resolve(extra.get(path)) : readRepo(path);
  return { files: plan.files, read };
}

Deno.test("checkWiring() passes what deno task new writes, and names each file a hand edit forgot", async () => {
  const { files, read } = await withNewFunction("wiring_probe");
  assert.deepEqual(await checkWiring(files, read), []);

  const without = (text: string, path: (string | number)[]) => {
    const doc = parseDocument(text, { merge: true });
    assert.ok(doc.deleteIn(path), `${path.join(".")} existed`);
    return doc.toString();
  };
  const cases: [string, Partial<typeof files>, RegExp][] = [
    [
      "compose service",
      { compose: without(files.compose, ["services", "worker-wiring-probe"]) },
      /^compose\.yaml: 0 services build function 'wiring_probe'/,
    ],
    [
      "compose secret",
      { compose: without(files.compose, ["secrets", "wiring_probe_password"]) },
      /^compose\.yaml: secret wiring_probe_password/,
    ],
    ["cluster worker", {
      composeCluster: without(files.composeCluster, ["services", "worker-wiring-probe"]),
    }, /^compose\.cluster\.yaml: service worker-wiring-probe does not connect/],
    [
      "stack service",
      { stack: without(files.stack, ["services", "worker-wiring-probe"]) },
      /^stack\.yaml: 0 services run the image of 'wiring_probe'/,
    ],
    [
      "stack secret",
      { stack: without(files.stack, ["secrets", "wiring_probe_password"]) },
      /^stack\.yaml: secret wiring_probe_password/,
    ],
    ["secrets-init flag", {
      compose: files.compose.replace("      - --function=wiring_probe=wiring_probe_q\n", ""),
    }, /secrets-init has no --function=wiring_probe=wiring_probe_q/],
    [
      "lock:worker",
      { denoJson: files.denoJson.replace(" functions/wiring_probe.ts", "") },
      /^deno\.json: lock:worker does not cache functions\/wiring_probe\.ts/,
    ],
    [
      "a removed function's worker",
      { testConfig: without(files.testConfig, ["functions", "wiring_probe"]) },
      /^compose\.yaml: service worker-wiring-probe builds 'wiring_probe', not in test-config\.yml/,
    ],
  ];
  for (const [what, change, expected] of cases) {
    const problems = await checkWiring({ ...files, ...change }, read);
    assert.ok(problems.some((p) => expected.test(p)), `${what}: ${JSON.stringify(problems)}`);
  }

  const noModule: ReadText = (path) =>
    path === "functions/wiring_probe.ts" ? Promise.resolve(undefined) : read(path);
  assert.match(
    (await checkWiring(files, noModule)).join("\n"),
    /functions\/wiring_probe\.ts: missing/,
  );
  const staleManifests: ReadText = (path) =>
    path.startsWith("ops/kubernetes/functions/wiring_probe/")
      ? Promise.resolve(undefined)
      : read(path);
  assert.match((await checkWiring(files, staleManifests)).join("\n"), /run 'deno task manifests'/);
});

Deno.test("planNewFunction() refuses a bad name, a taken name or queue, with the fix", async () => {
  const files = await readProjectFiles(ROOT);
  const refused: [string, string | undefined, RegExp][] = [
    ["Resize-Image", undefined, /not lower_snake_case/],
    ["9lives", undefined, /not lower_snake_case/],
    ["x".repeat(64), undefined, /at most 63/],
    ["task_a", undefined, /test-config\.yml has it already/],
    ["dispatcher", undefined, /broker user would be the stack's own 'dispatcher'/],
    ["resize_test", undefined, /taken for a test file/],
    ["resize", "queue_a", /function 'task_a' consumes it: give it a queue of its own/],
    ["resize", "Queue", /queue 'Queue' as it is not lower_snake_case/],
  ];
  for (const [name, queue, expected] of refused) {
    assert.throws(() => planNewFunction(files, { name, queue: queue ?? name }), (error: Error) => {
      assert.ok(error instanceof TypeError);
      assert.match(error.message, expected);
      return true;
    });
  }
});
