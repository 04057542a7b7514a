import assert from "node:assert/strict";
import { checkHealth, handleHealthRequest, METRICS_CONTENT_TYPE, serveHealth } from "./health.ts";

Deno.test("serveHealth() answers /healthz 200 only while consuming, and serves /metrics", async () => {
  let consuming = false;
  const server = serveHealth({
    port: 0,
    hostname: "127.0.0.1",
    consuming: () => consuming,
    metrics: () => "# TYPE up gauge\nup 1\n",
  });
  const get = (path: string) => fetch(`http://127.0.0.1:${server.port}${path}`);
  try {
    const before = await get("/healthz");
    assert.equal(before.status, 503);
    assert.equal(await before.text(), "not consuming\n");
    consuming = true;
    const during = await get("/healthz");
    assert.equal(during.status, 200);
    await during.body?.cancel();
    consuming = false;
    const after = await get("/healthz");
    assert.equal(after.status, 503);
    await after.body?.cancel();
    const metrics = await get("/metrics");
    assert.equal(metrics.status, 200);
    assert.equal(metrics.headers.get("content-type"), METRICS_CONTENT_TYPE);
    assert.equal(await metrics.text(), "# TYPE up gauge\nup 1\n");
  } finally {
    await server.shutdown();
  }
});

Deno.test("handleHealthRequest() refuses other paths and methods", async () => {
  const options = { port: 0, consuming: () => true, metrics: () => "" };
  const missing = handleHealthRequest(new Request("http://w/other"), options);
  assert.equal(missing.status, 404);
  assert.match(await missing.text(), /use \/healthz or \/metrics/);
  const post = handleHealthRequest(new Request("http://w/healthz", { method: "POST" }), options);
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET, HEAD");
  await post.body?.cancel();
});

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
