import assert from "node:assert/strict";
import { parse } from "yaml";
import { addFunction } from "./add_function.ts";

const REGISTRY = `# The registry.
functions:
  task_a:
    queue: queue_a # the first
`;
const CONFIG = `scenarios:
  basic: { tasks: [{ task: task_a }] }
`;

Deno.test("addFunction() adds the entry and a scenario, keeping the files' comments", () => {
  const added = addFunction(REGISTRY, CONFIG, { name: "resize_image", queue: "images" });
  assert.match(added.registryText, /^# The registry\.$/m);
  assert.match(added.registryText, /queue: queue_a # the first/);
  assert.deepEqual(parse(added.registryText).functions.resize_image, { queue: "images" });
  assert.equal(added.registry.functions.get("resize_image")?.service, "worker-resize-image");
  assert.deepEqual(parse(added.testConfigText).scenarios.resize_image.tasks, [
    {
      task: "resize_image",
      payload: { work_ms: 10 },
      expect: { result: "Hello from resize_image" },
    },
  ]);
});

Deno.test("addFunction() refuses a bad name, a taken name or queue, with the fix", () => {
  const refused: [string, string | undefined, RegExp][] = [
    ["Resize-Image", undefined, /'Resize-Image' is not lower_snake_case/],
    ["9lives", undefined, /not lower_snake_case/],
    ["x".repeat(64), undefined, /not lower_snake_case/],
    ["task_a", undefined, /functions\/registry\.yaml has it already: choose another name/],
    ["dispatcher", undefined, /would make its workers' user the stack's own 'dispatcher'/],
    ["resize_test", undefined, /would be taken for a test/],
    ["resize", "queue_a", /'queue_a' is already the queue of task_a/],
    ["resize", "Queue", /queue 'Queue' is not lower_snake_case/],
  ];
  for (const [name, queue, expected] of refused) {
    assert.throws(
      () => addFunction(REGISTRY, CONFIG, { name, queue: queue ?? name }),
      (error: Error) => {
        assert.ok(error instanceof TypeError, `${name}: ${error}`);
        assert.match(error.message, /^Cannot create function /);
        assert.match(error.message, expected);
        return true;
      },
      name,
    );
  }
});

Deno.test("addFunction() writes a schedule short without a time zone, in full with one, and refuses a bad one", () => {
  const short = addFunction(REGISTRY, CONFIG, {
    name: "report",
    queue: "reports",
    schedule: { cron: "0 3 * * *" },
  });
  assert.deepEqual(parse(short.registryText).functions.report, {
    queue: "reports",
    schedule: "0 3 * * *",
  });
  assert.equal(short.registry.functions.get("report")?.schedule?.timeZone, "UTC");
  const zoned = addFunction(REGISTRY, CONFIG, {
    name: "report",
    queue: "reports",
    schedule: { cron: "0 0 3 * * *", timeZone: "Europe/Berlin" },
  });
  assert.deepEqual(parse(zoned.registryText).functions.report.schedule, {
    cron: "0 0 3 * * *",
    time_zone: "Europe/Berlin",
  });
  assert.throws(
    () =>
      addFunction(REGISTRY, CONFIG, {
        name: "report",
        queue: "reports",
        schedule: { cron: "0 3 * *" },
      }),
    /^TypeError: Cannot create function 'report' on queue 'reports' as '0 3 \* \*' is not a cron pattern/,
  );
  assert.throws(
    () =>
      addFunction(REGISTRY, CONFIG, {
        name: "report",
        queue: "reports",
        schedule: { cron: "0 3 * * *", timeZone: "Mars/Olympus" },
      }),
    /'Mars\/Olympus' is not a time zone this system knows/,
  );
});

Deno.test("addFunction() writes --trigger and --emits into the entry, checked as the registry is", () => {
  const added = addFunction(REGISTRY, CONFIG, {
    name: "price_order",
    queue: "price_order",
    triggers: ["order.created", "order.*"],
    emits: "order.priced",
  });
  assert.deepEqual(parse(added.registryText).functions.price_order, {
    queue: "price_order",
    triggers: ["order.created", "order.*"],
    emits: "order.priced",
  });
  assert.deepEqual(added.registry.functions.get("price_order")?.triggers, [
    "order.created",
    "order.*",
  ]);
  assert.throws(
    () => addFunction(REGISTRY, CONFIG, { name: "x_fn", queue: "x_fn", triggers: ["a b"] }),
    /Cannot create function 'x_fn' on queue 'x_fn' as triggers: "a b" is not a topic pattern/,
  );
});
