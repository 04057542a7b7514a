import assert from "node:assert/strict";
import { registryEvents } from "./event_settings.ts";

Deno.test("registryEvents() gives a host worker each function's triggers and emits", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/registry.yaml`;
    await Deno.writeTextFile(
      file,
      "functions:\n  task_x:\n    queue: queue_x\n    triggers: [a.b]\n    emits: a.c\n" +
        "  task_y:\n    queue: queue_y\n",
    );
    const events = await registryEvents(new URL(`file://${file}`));
    assert.deepEqual(events?.get("task_x"), { triggers: ["a.b"], emits: "a.c" });
    assert.deepEqual(events?.get("task_y"), { triggers: [] });
    assert.equal(await registryEvents(new URL(`file://${dir}/none.yaml`)), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
