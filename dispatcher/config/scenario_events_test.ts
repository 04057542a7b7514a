import assert from "node:assert/strict";
import { ConfigError } from "../../core/config_error.ts";
import { parseRegistry } from "../../core/registry.ts";
import { parseConfig } from "./load_config.ts";
import { reachedBy } from "./scenario_events.ts";

const REGISTRY = parseRegistry(
  [
    "functions:",
    "  price:",
    "    queue: price",
    '    triggers: ["order.*"]',
    "    emits: order.priced.v1",
    "  ship:",
    "    queue: ship",
    '    triggers: ["order.priced.#"]',
    "  other:",
    "    queue: other",
  ].join("\n"),
  "registry.yaml",
);

Deno.test("reachedBy() follows triggers and emits down a chain", () => {
  assert.deepEqual([...reachedBy("order.created", REGISTRY.functions.values())].sort(), [
    "price",
    "ship",
  ]);
  assert.deepEqual([...reachedBy("user.created", REGISTRY.functions.values())], []);
});

Deno.test("parseConfig() reads a scenario's events and the runs each must trigger", () => {
  const config = parseConfig(
    [
      "scenarios:",
      "  flow:",
      "    events:",
      "      - emit: order.created",
      "        data: { order: 1 }",
      "        timeout_ms: 2000",
      "        binary: true",
      "        expect_runs: [{ function: price }, { function: ship, status: error }]",
    ].join("\n"),
    "test-config.yml",
    { registry: REGISTRY },
  );
  const scenario = config.scenarios.get("flow")!;
  assert.deepEqual(scenario.tasks, [], "events alone need no tasks");
  assert.deepEqual(scenario.events, [{
    type: "order.created",
    data: { order: 1 },
    timeoutMs: 2000,
    binary: true,
    expectRuns: [{ function: "price", status: "success" }, { function: "ship", status: "error" }],
  }]);
  assert.deepEqual(config.subscriptions?.get("ship"), { triggers: ["order.priced.#"] });
});

Deno.test("parseConfig() refuses an event no expected function runs on, at its line", () => {
  assert.throws(
    () =>
      parseConfig(
        [
          "scenarios:",
          "  flow:",
          "    events:",
          "      - emit: order created",
          "      - emit: order.created",
          "        data: [1]",
          "        expect_runs: [{ function: other }, { function: nope }, { function: price, status: maybe }]",
        ].join("\n"),
        "test-config.yml",
        { registry: REGISTRY },
      ),
    (error: ConfigError) => {
      const lines = error.message.split("\n").slice(1);
      assert.match(lines[0], /:4:15: .*emit: must be an event type/);
      assert.match(lines[1], /:6:15: .*data: must be a mapping/);
      assert.match(lines[2], /'other' does not run on 'order\.created' \(its triggers: none\)/);
      assert.match(lines[3], /"nope" is not a function of the registry|'nope' is not a function/);
      assert.match(lines[4], /status: must be success or error/);
      return true;
    },
  );
});
