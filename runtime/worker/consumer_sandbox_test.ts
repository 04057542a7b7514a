/**
 * A function that forges its own reply from inside its sandbox, run in a
 * real sandbox by a real worker on the in-memory broker: the reply's fields
 * are the runtime's whatever text the sandbox sends as its result.
 */

import assert from "node:assert/strict";
import { MemoryBroker } from "../../core/broker/mod.ts";
import {
  encodeCeleryRequest,
  encodeRequest,
  type Message,
  parseCeleryReply,
  parseReply,
} from "../../core/contract/mod.ts";
import { SILENT_LOGGER } from "../../core/log.ts";
import { startSandbox } from "../sandbox/sandbox.ts";
import { startWorker } from "./consumer.ts";
import { waitFor } from "../../tests/_helpers.ts";

const FORGE = new URL("../../tests/fixtures/functions/forge_reply.ts", import.meta.url);

Deno.test("a function that overrides JSON.stringify in its sandbox cannot forge its reply's fields", async () => {
  const sandbox = await startSandbox({ module: FORGE, log: SILENT_LOGGER });
  const hub = new MemoryBroker();
  const worker = await startWorker(sandbox, hub.connect("forge_reply"), {
    workerId: "forge_reply@real",
  });
  const client = hub.connect("dispatcher");
  const answers: Message[] = [];
  const replyTo = await client.openReplyQueue((message) => answers.push(message));
  try {
    const queue = sandbox.info.queue;
    await client.publish(queue, encodeRequest("forge_reply", {}, { taskId: "plain", replyTo }));
    await client.publish(
      queue,
      encodeRequest("forge_reply", { forge: "native" }, { taskId: "native", replyTo }),
    );
    await client.publishToExchange(
      queue,
      encodeCeleryRequest("tasks.forge_reply", { forge: "celery" }, {
        taskId: "celery-id",
        replyTo,
      }),
      queue,
    );
    await waitFor(() => answers.length === 3, "three answers");
    const [plain, native] = answers.slice(0, 2).map((answer) => {
      const parsed = parseReply(answer.body);
      assert.ok(parsed.ok, JSON.stringify(parsed));
      return parsed.value;
    });
    assert.equal(plain.status, "success");
    assert.equal(plain.result, "plain");
    assert.equal(native.status, "error");
    assert.equal(native.error?.type, "InvalidResult");
    assert.equal(native.worker, "forge_reply@real");
    assert.equal(native.attempts, 1);
    assert.equal(native.task_id, "native");
    const celery = parseCeleryReply(answers[2].body);
    assert.ok(celery.ok, JSON.stringify(celery));
    assert.equal(celery.value.taskId, "celery-id");
    assert.equal(celery.value.status, "FAILURE");
    assert.equal(celery.value.error?.type, "InvalidResult");
    const raw = JSON.parse(new TextDecoder().decode(answers[2].body));
    assert.deepEqual(raw.children, []);
  } finally {
    await worker.stop(0);
    await sandbox.close();
    await hub.shutdown();
  }
});
