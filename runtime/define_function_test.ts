import assert from "node:assert/strict";
import {
  DEFAULT_RETRY_POLICY,
  defineFunction,
  type DefineFunctionOptions,
  type Handler,
  InvalidPayloadError,
  NAME_PATTERN,
  NonRetryableError,
} from "./define_function.ts";

const handler: Handler = () => "ok";

Deno.test("defineFunction() keeps the name, queue and handler it was given", () => {
  const fn = defineFunction({ name: "task_a", queue: "queue_a", handler });
  assert.equal(fn.name, "task_a");
  assert.equal(fn.queue, "queue_a");
  assert.equal(fn.handler, handler);
});

Deno.test("defineFunction() gives the default retry policy when none is given", () => {
  const fn = defineFunction({ name: "task_a", queue: "queue_a", handler });
  assert.deepEqual(fn.retry, {
    maxRetries: 3,
    baseDelayMs: 500,
    factor: 2,
    maxDelayMs: 30_000,
    jitter: 0.2,
  });
  assert.deepEqual(fn.retry, DEFAULT_RETRY_POLICY);
  assert.notEqual(fn.retry, DEFAULT_RETRY_POLICY, "a copy, not the shared default");
});

Deno.test("defineFunction() merges retry overrides over the default policy", () => {
  const fn = defineFunction({
    name: "task_a",
    queue: "queue_a",
    handler,
    retry: { maxRetries: 5, baseDelayMs: 1000 },
  });
  assert.deepEqual(fn.retry, { ...DEFAULT_RETRY_POLICY, maxRetries: 5, baseDelayMs: 1000 });
  const never = defineFunction({
    name: "task_a",
    queue: "queue_a",
    handler,
    retry: { maxRetries: 0 },
  });
  assert.equal(never.retry.maxRetries, 0, "0 is an override, not a missing value");
});

Deno.test("defineFunction() keeps the default for a retry setting given as undefined", () => {
  const fn = defineFunction({
    name: "task_a",
    queue: "queue_a",
    handler,
    retry: { maxRetries: undefined, factor: 3 },
  });
  assert.equal(fn.retry.maxRetries, DEFAULT_RETRY_POLICY.maxRetries);
  assert.equal(fn.retry.factor, 3);
});

Deno.test("defineFunction() returns a frozen definition with a frozen retry policy", () => {
  const overrides = { maxRetries: 1 };
  const fn = defineFunction({ name: "task_a", queue: "queue_a", handler, retry: overrides });
  assert.ok(Object.isFrozen(fn));
  assert.ok(Object.isFrozen(fn.retry));
  assert.throws(() => {
    (fn as { name: string }).name = "task_b";
  }, TypeError);
  assert.throws(() => {
    (fn.retry as { maxRetries: number }).maxRetries = 9;
  }, TypeError);
  overrides.maxRetries = 7;
  assert.equal(fn.retry.maxRetries, 1, "later changes to the options do not leak in");
  assert.equal(DEFAULT_RETRY_POLICY.maxRetries, 3, "the shared default is untouched");
});

Deno.test("defineFunction() refuses a name that is not lower_snake_case", () => {
  for (const name of ["TaskA", "task-a", "", "1task", "_task", "task a", "t".repeat(64)]) {
    assert.throws(
      () => defineFunction({ name, queue: "queue_a", handler }),
      (error: unknown) => {
        assert.ok(error instanceof TypeError);
        assert.equal(
          error.message,
          `Cannot define function as its name '${name}' is not lower_snake_case: ` +
            "use letters, digits and _ (at most 63)",
        );
        return true;
      },
      name,
    );
  }
});

Deno.test("defineFunction() refuses a queue that is not lower_snake_case", () => {
  assert.throws(
    () => defineFunction({ name: "task_a", queue: "queue.a", handler }),
    { name: "TypeError", message: /its queue 'queue\.a' is not lower_snake_case/ },
  );
});

Deno.test("defineFunction() refuses a name or queue that is not a string", () => {
  for (const value of [undefined, null, 7]) {
    const options = { name: value, queue: "queue_a", handler } as unknown as DefineFunctionOptions;
    assert.throws(() => defineFunction(options), { name: "TypeError", message: /its name/ });
    const queueless = { name: "task_a", queue: value, handler } as unknown as DefineFunctionOptions;
    assert.throws(() => defineFunction(queueless), { name: "TypeError", message: /its queue/ });
  }
});

Deno.test("defineFunction() accepts names of one to 63 characters", () => {
  for (const name of ["a", "a1", "task_b_2", "t".repeat(63)]) {
    assert.equal(defineFunction({ name, queue: name, handler }).name, name);
    assert.ok(NAME_PATTERN.test(name));
  }
});

Deno.test("defineFunction() refuses a handler that is not a function", () => {
  const options = { name: "task_a", queue: "queue_a", handler: "run" };
  assert.throws(() => defineFunction(options as unknown as DefineFunctionOptions), {
    name: "TypeError",
    message: "Cannot define function 'task_a' as its handler is not a function",
  });
});

Deno.test("InvalidPayloadError is a NonRetryableError named InvalidPayload", () => {
  const error = new InvalidPayloadError("bad field");
  assert.ok(error instanceof NonRetryableError);
  assert.ok(error instanceof Error);
  assert.equal(error.name, "InvalidPayload");
  assert.equal(error.message, "bad field");
  const cause = new Error("root");
  const wrapped = new NonRetryableError("cannot retry", { cause });
  assert.equal(wrapped.name, "NonRetryableError");
  assert.equal(wrapped.cause, cause);
});

Deno.test("defineFunction() refuses retry settings out of range, naming the setting", () => {
  const bad: [Record<string, number>, RegExp][] = [
    [{ maxRetries: -1 }, /retry\.maxRetries is -1/],
    [{ maxRetries: 1.5 }, /retry\.maxRetries is 1\.5: use a whole number/],
    [{ factor: 0.5 }, /retry\.factor is 0\.5: use a number from 1/],
    [{ jitter: 2 }, /retry\.jitter is 2: use a number from 0 to 1/],
    [{ baseDelayMs: Number.NaN }, /retry\.baseDelayMs is NaN/],
  ];
  for (const [retry, pattern] of bad) {
    assert.throws(
      () => defineFunction({ name: "f", queue: "q", handler: () => 1, retry }),
      (error: unknown) => error instanceof RangeError && pattern.test(error.message),
      JSON.stringify(retry),
    );
  }
});

Deno.test("defineFunction() gives a time limit of 5 minutes by default, and allows at most a day", () => {
  assert.equal(defineFunction({ name: "task_a", queue: "queue_a", handler }).timeoutMs, 300_000);
  const day = defineFunction({ name: "task_a", queue: "queue_a", handler, timeoutMs: 86_400_000 });
  assert.equal(day.timeoutMs, 86_400_000);
  for (const timeoutMs of [86_400_001, 0, 1.5]) {
    assert.throws(
      () => defineFunction({ name: "task_a", queue: "queue_a", handler, timeoutMs }),
      new RegExp(
        `timeoutMs is ${timeoutMs}: use a whole number of milliseconds from 1 to 86400000`,
      ),
    );
  }
});
