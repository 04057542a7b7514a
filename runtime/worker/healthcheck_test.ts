import assert from "node:assert/strict";
import { checkHealth } from "./healthcheck.ts";
import { serveHealth } from "../process/health.ts";

Deno.test("checkHealth() passes only on a 200 from /healthz", async () => {
  let consuming = true;
  const server = serveHealth({
    port: 0,
    hostname: "127.0.0.1",
    consuming: () => consuming,
    metrics: () => "",
  });
  try {
    assert.deepEqual(await checkHealth(server.port), {
      code: 0,
      message: "healthy: ok: consuming",
    });
    consuming = false;
    const sick = await checkHealth(server.port);
    assert.equal(sick.code, 1);
    assert.match(sick.message, /answered 503: not consuming/);
  } finally {
    await server.shutdown();
  }
  const gone = await checkHealth(server.port);
  assert.equal(gone.code, 1);
  assert.match(gone.message, /did not answer/);
  assert.equal((await checkHealth(0)).code, 1);
});
