import assert from "node:assert/strict";
import { DEFAULT_METRICS_PORT, readWorkerSettings } from "./worker_settings.ts";

Deno.test("readWorkerSettings() reads METRICS_PORT, 0 meaning off, and refuses bad ports", () => {
  const read = (env: Record<string, string>) => readWorkerSettings((name) => env[name]);
  assert.equal(read({}).metricsPort, DEFAULT_METRICS_PORT);
  assert.equal(read({ METRICS_PORT: "0" }).metricsPort, 0);
  assert.equal(read({ METRICS_PORT: "9100" }).metricsPort, 9100);
  for (const bad of ["-1", "65536", "http", "80.5"]) {
    assert.throws(
      () => read({ METRICS_PORT: bad }),
      (error: Error) =>
        error instanceof RangeError &&
        error.message ===
          `Cannot start the worker as METRICS_PORT is '${bad}': set it to a whole number from 0 to 65535`,
    );
  }
});
