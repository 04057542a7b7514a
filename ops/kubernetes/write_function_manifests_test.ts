import assert from "node:assert/strict";
import {
  functionManifestFiles,
  functionsKustomization,
  kedaPermissionFile,
} from "./function_manifests.ts";
import { writeFunctionManifests } from "./write_function_manifests.ts";

async function listing(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isDirectory) {
      names.push(entry.name);
      continue;
    }
    for (const name of await listing(`${dir}/${entry.name}`)) names.push(`${entry.name}/${name}`);
  }
  return names.sort();
}

Deno.test("writeFunctionManifests() writes each function's directory and deletes those of removed functions", async () => {
  const dir = await Deno.makeTempDir({ prefix: "functions_" });
  try {
    const a = { name: "task_a", queue: "queue_a" };
    const b = { name: "task_b", queue: "queue_b" };
    await writeFunctionManifests([a, b], dir);
    await Deno.writeTextFile(`${dir}/task_a/stale.yaml`, "kind: Old\n");
    await Deno.mkdir(`${dir}/hand_made`);
    await Deno.writeTextFile(`${dir}/hand_made/kustomization.yaml`, "resources: []\n");

    const result = await writeFunctionManifests([a], dir);
    assert.deepEqual(result.deleted.sort(), ["task_a/stale.yaml", "task_b/"]);
    assert.deepEqual(await listing(dir), [
      "hand_made/kustomization.yaml",
      "keda-permission.yaml",
      "kustomization.yaml",
      ...Object.keys(functionManifestFiles(a)).map((file) => `task_a/${file}`).sort(),
    ]);
    assert.equal(
      await Deno.readTextFile(`${dir}/task_a/deployment.yaml`),
      functionManifestFiles(a)["deployment.yaml"],
    );
    assert.equal(
      await Deno.readTextFile(`${dir}/kustomization.yaml`),
      functionsKustomization(["task_a"]),
    );
    assert.equal(
      await Deno.readTextFile(`${dir}/keda-permission.yaml`),
      kedaPermissionFile([a]),
      "KEDA may passively declare the queues of the functions left, and no other",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
