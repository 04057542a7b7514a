import assert from "node:assert/strict";
import { type Broker, type Delivery, MemoryBroker } from "../core/broker/mod.ts";
import {
  EVENTS_EXCHANGE,
  parseSchedulerNote,
  SCHEDULE_EXCHANGE,
  SCHEDULER_ACTIVE_TYPE,
  SCHEDULER_QUEUE,
  SCHEDULER_USER,
  type SchedulerNote,
  tickOf,
} from "../core/contract/mod.ts";
import { createLogger, type Logger } from "../core/log.ts";
import { parseSchedule, type Schedule } from "../core/schedule.ts";
import { fingerprintOf } from "../runtime/worker/answered_tasks.ts";
import { waitFor } from "../tests/_helpers.ts";
import {
  type SchedulerClock,
  type SchedulerSession,
  type SchedulerSessionOptions,
  startSchedulerSession,
} from "./scheduler_session.ts";
import { encodeState } from "./scheduler_state.ts";

const T0 = Date.parse("2026-01-01T00:00:00.500Z");

/** Time that moves only when the test says so. */
class ManualClock implements SchedulerClock {
  #now: number;
  #sleepers = new Set<{ until: number; resolve: () => void }>();
  constructor(now: number) {
    this.#now = now;
  }
  now(): number {
    return this.#now;
  }
  sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const sleeper = { until: this.#now + ms, resolve };
      this.#sleepers.add(sleeper);
      signal.addEventListener("abort", () => {
        this.#sleepers.delete(sleeper);
        resolve();
      }, { once: true });
      this.#wake();
    });
  }
  advance(ms: number): void {
    this.#now += ms;
    this.#wake();
  }
  #wake(): void {
    for (const sleeper of this.#sleepers) {
      if (sleeper.until > this.#now) continue;
      this.#sleepers.delete(sleeper);
      sleeper.resolve();
    }
  }
}

/** `broker` with some of its methods replaced. */
function wrapped(broker: Broker, overrides: Partial<Broker>): Broker {
  return new Proxy(broker, {
    get(target, property) {
      if (property in overrides) return overrides[property as keyof Broker];
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

function schedule(value: unknown): Schedule {
  const read = parseSchedule(value);
  assert.ok("value" in read);
  return read.value;
}

/** Log lines kept, to assert on what the scheduler says. */
function recorder(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { lines, log: createLogger({ write: (line) => lines.push(JSON.parse(line)) }) };
}

async function setup(options: { queues?: string[] } = {}) {
  const hub = new MemoryBroker();
  const clock = new ManualClock(T0);
  const observer = hub.connect("observer");
  const ticks: Delivery[] = [];
  for (const queue of options.queues ?? ["queue_every"]) {
    await observer.declareQueue(queue);
    await observer.consume(queue, (delivery) => {
      ticks.push(delivery);
      observer.ack(delivery);
    }, { prefetch: 1000 });
  }
  const sessions: SchedulerSession[] = [];
  return {
    hub,
    clock,
    observer,
    /** Tick times received, as ISO text, per function. */
    received: (name = "every") =>
      ticks.filter((d) => d.properties.messageId?.startsWith(`${name}@`)).map((d) =>
        tickOf(d.properties.headers)
      ),
    ticks,
    async start(
      id: string,
      fns: SchedulerSessionOptions["functions"],
      extra: Partial<SchedulerSessionOptions> = {},
      broker: Broker = hub.connect(SCHEDULER_USER),
    ) {
      const session = await startSchedulerSession(broker, {
        functions: fns,
        id,
        log: extra.log ?? recorder().log,
        clock,
        settleMs: 0,
        renewMs: 60_000,
        ...extra,
      });
      sessions.push(session);
      return { session, broker };
    },
    async close() {
      await Promise.all(sessions.map((s) => s.stop()));
      await hub.shutdown();
    },
  };
}

const EVERY_SECOND = {
  name: "every",
  queue: "queue_every",
  schedule: schedule("* * * * * *"),
};

Deno.test("startSchedulerSession(): only the replica the broker feeds fires; the other waits", async () => {
  const t = await setup();
  try {
    const a = await t.start("a", [EVERY_SECOND]);
    const b = await t.start("b", [EVERY_SECOND]);
    await waitFor(() => a.session.active, "a active");
    for (let i = 0; i < 3; i++) {
      t.clock.advance(1000);
      await waitFor(() => t.ticks.length === i + 1, `tick ${i + 1}`);
    }
    assert.deepEqual(t.received(), [
      "2026-01-01T00:00:01.000Z",
      "2026-01-01T00:00:02.000Z",
      "2026-01-01T00:00:03.000Z",
    ]);
    assert.equal(b.session.active, false);
    const [first] = t.ticks;
    assert.equal(first.properties.messageId, "every@2026-01-01T00:00:01.000Z");
    assert.equal(first.properties.replyTo, undefined);
    assert.equal(first.exchange, SCHEDULE_EXCHANGE);
    assert.equal(first.properties.userId, SCHEDULER_USER);
  } finally {
    await t.close();
  }
});

Deno.test("startSchedulerSession(): when the active replica's connection goes, the next fires the next tick, none lost or twice", async () => {
  const t = await setup();
  try {
    const a = await t.start("a", [EVERY_SECOND]);
    const b = await t.start("b", [EVERY_SECOND]);
    await waitFor(() => a.session.active, "a active");
    t.clock.advance(1000);
    await waitFor(() => t.ticks.length === 1, "a's tick");
    await a.broker.close();
    await waitFor(() => b.session.active, "b takes over");
    t.clock.advance(1000);
    await waitFor(() => t.ticks.length === 2, "b's first tick");
    t.clock.advance(1000);
    await waitFor(() => t.ticks.length === 3, "b's second tick");
    assert.deepEqual(t.received(), [
      "2026-01-01T00:00:01.000Z",
      "2026-01-01T00:00:02.000Z",
      "2026-01-01T00:00:03.000Z",
    ]);
  } finally {
    await t.close();
  }
});

Deno.test("startSchedulerSession(): a replica that dies between a tick and its state leaves the next to fire the same bytes again", async () => {
  const t = await setup();
  try {
    const broker = t.hub.connect(SCHEDULER_USER);
    let dying = false;
    // The connection ends as the state after the second tick is published.
    const dies = wrapped(broker, {
      publishToExchange(exchange, message, key) {
        if (key === SCHEDULER_QUEUE && dying) {
          broker.close();
          return Promise.reject(new Error("gone"));
        }
        return broker.publishToExchange(exchange, message, key);
      },
    });
    const a = await t.start("a", [EVERY_SECOND], {}, dies);
    const b = await t.start("b", [EVERY_SECOND]);
    await waitFor(() => a.session.active, "a active");
    t.clock.advance(1000);
    await waitFor(() => t.ticks.length === 1, "first tick");
    dying = true;
    t.clock.advance(1000);
    await waitFor(() => b.session.active, "b takes over");
    await assert.rejects(a.session.ended);
    await waitFor(() => t.ticks.length === 3, "b fires the second tick again");
    assert.deepEqual(t.received(), [
      "2026-01-01T00:00:01.000Z",
      "2026-01-01T00:00:02.000Z",
      "2026-01-01T00:00:02.000Z",
    ]);
    // One task to a worker: the same id and the same fingerprint.
    const [, again, copy] = t.ticks;
    assert.equal(copy.properties.messageId, again.properties.messageId);
    assert.equal(fingerprintOf(copy), fingerprintOf(again));
  } finally {
    await t.close();
  }
});

Deno.test("startSchedulerSession(): copies of the state are merged, the later tick of each function winning", async () => {
  const t = await setup({ queues: ["queue_every", "queue_other"] });
  try {
    const seeder = t.hub.connect(SCHEDULER_USER);
    await seeder.declareExchange(SCHEDULE_EXCHANGE, "direct");
    await seeder.declareQueue(SCHEDULER_QUEUE, {
      type: "quorum",
      singleActiveConsumer: true,
      deliveryLimit: 2 ** 31,
    });
    await seeder.bindQueue(SCHEDULER_QUEUE, SCHEDULE_EXCHANGE, SCHEDULER_QUEUE);
    const state = (ticks: Record<string, number>) =>
      seeder.publishToExchange(
        SCHEDULE_EXCHANGE,
        encodeState(new Map(Object.entries(ticks)), "old", T0),
        SCHEDULER_QUEUE,
      );
    await state({ every: T0 - 3_500, other: T0 - 1_500 });
    await state({ every: T0 - 1_500, other: T0 - 10_500 });
    const other = { name: "other", queue: "queue_other", schedule: schedule("* * * * * *") };
    await t.start("a", [EVERY_SECOND, other], { settleMs: 100 });
    // Both copies reach the replica while it settles, before it fires.
    await waitFor(async () => (await seeder.inspectQueue(SCHEDULER_QUEUE))?.messages === 0, "held");
    t.clock.advance(100);
    // Each function goes on after its latest tick: 1 s missed each, fired late.
    await waitFor(() => t.ticks.length === 2, "the missed ticks");
    assert.deepEqual(t.received("every"), ["2026-01-01T00:00:00.000Z"]);
    assert.deepEqual(t.received("other"), ["2026-01-01T00:00:00.000Z"]);
    await waitFor(async () => (await seeder.inspectQueue(SCHEDULER_QUEUE))?.messages === 0, "one");
  } finally {
    await t.close();
  }
});

Deno.test("startSchedulerSession(): a state from another broker user is dropped, and says so", async () => {
  const t = await setup();
  try {
    const forger = t.hub.connect("dispatcher");
    await forger.declareExchange(SCHEDULE_EXCHANGE, "direct");
    await forger.declareQueue(SCHEDULER_QUEUE, {
      type: "quorum",
      singleActiveConsumer: true,
      deliveryLimit: 2 ** 31,
    });
    await forger.bindQueue(SCHEDULER_QUEUE, SCHEDULE_EXCHANGE, SCHEDULER_QUEUE);
    // An hour ahead would silence the schedule for an hour, were it believed.
    await forger.publishToExchange(
      SCHEDULE_EXCHANGE,
      encodeState(new Map([["every", T0 + 3_000_000]]), "forger", T0),
      SCHEDULER_QUEUE,
    );
    const { log, lines } = recorder();
    const a = await t.start("a", [EVERY_SECOND], { log });
    await waitFor(() => a.session.active, "active all the same");
    t.clock.advance(1000);
    await waitFor(() => t.ticks.length === 1, "a tick");
    const dropped = lines.find((line) => /Dropped a message/.test(String(line.msg)));
    assert.equal(dropped?.sender, "dispatcher");
    assert.match(String(dropped?.reason), /not the scheduler's 'scheduler'/);
  } finally {
    await t.close();
  }
});

Deno.test("startSchedulerSession(): ticks missed while no replica ran fire late within the window, older ones are skipped", async () => {
  const t = await setup();
  try {
    const minutely = {
      name: "every",
      queue: "queue_every",
      schedule: schedule({ cron: "0 * * * * *", catch_up: "2m" }),
    };
    const first = await t.start("a", [minutely]);
    await waitFor(() => first.session.active, "a active");
    t.clock.advance(60_000);
    await waitFor(() => t.ticks.length === 1, "a's tick");
    await first.broker.close();
    // Ten minutes without a scheduler.
    t.clock.advance(10 * 60_000);
    const { log, lines } = recorder();
    await t.start("b", [minutely], { log });
    await waitFor(() => t.ticks.length === 3, "the missed ticks within 2 minutes");
    assert.deepEqual(t.received(), [
      "2026-01-01T00:01:00.000Z",
      "2026-01-01T00:10:00.000Z",
      "2026-01-01T00:11:00.000Z",
    ]);
    const skipped = lines.find((line) => /Skipped ticks/.test(String(line.msg)));
    assert.equal(skipped?.from, "2026-01-01T00:02:00.000Z");
    assert.equal(skipped?.catch_up_ms, 120_000);
  } finally {
    await t.close();
  }
});

Deno.test("startSchedulerSession(): ticks of a function whose queue does not exist yet wait for it", async () => {
  const t = await setup({ queues: [] });
  try {
    const { log, lines } = recorder();
    const a = await t.start("a", [EVERY_SECOND], { log, retryMs: 1000 });
    await waitFor(() => a.session.active, "active");
    t.clock.advance(1000);
    await waitFor(
      () => lines.some((line) => /Cannot fire a tick now/.test(String(line.msg))),
      "warn",
    );
    const got: string[] = [];
    await t.observer.declareQueue("queue_every");
    await t.observer.consume("queue_every", (d) => {
      got.push(tickOf(d.properties.headers)!);
      t.observer.ack(d);
    }, { prefetch: 10 });
    t.clock.advance(1000);
    await waitFor(() => got.length === 2, "both ticks, the first one late");
    assert.deepEqual(got, ["2026-01-01T00:00:01.000Z", "2026-01-01T00:00:02.000Z"]);
  } finally {
    await t.close();
  }
});

Deno.test("startSchedulerSession(): the active replica republishes the state before renewMs, with no tick due", async () => {
  const t = await setup();
  try {
    const broker = t.hub.connect(SCHEDULER_USER);
    let states = 0;
    const counting = wrapped(broker, {
      publishToExchange(exchange, message, key) {
        if (key === SCHEDULER_QUEUE) states++;
        return broker.publishToExchange(exchange, message, key);
      },
    });
    const hourly = { name: "every", queue: "queue_every", schedule: schedule("@hourly") };
    const a = await t.start("a", [hourly], { renewMs: 10_000 }, counting);
    await waitFor(() => a.session.active, "active");
    await waitFor(() => states === 2, "the seed, then the first function's start");
    t.clock.advance(10_000);
    await waitFor(() => states === 3, "renewed");
    // Only one state stays: the one this replica holds.
    await waitFor(
      async () => (await t.observer.inspectQueue(SCHEDULER_QUEUE))?.messages === 0,
      "0",
    );
    assert.equal(t.ticks.length, 0);
  } finally {
    await t.close();
  }
});

Deno.test("startSchedulerSession(): the active replica tells the events exchange that it fires", async () => {
  const t = await setup();
  try {
    const notes: SchedulerNote[] = [];
    await t.observer.declareExchange(EVENTS_EXCHANGE, "fanout");
    await t.observer.declareQueue("notes");
    await t.observer.bindQueue("notes", EVENTS_EXCHANGE);
    await t.observer.consume("notes", (delivery) => {
      if (delivery.properties.type === SCHEDULER_ACTIVE_TYPE) {
        notes.push(parseSchedulerNote(delivery.body)!);
      }
      t.observer.ack(delivery);
    }, { prefetch: 10 });
    const a = await t.start("replica-a", [EVERY_SECOND]);
    await t.start("replica-b", [EVERY_SECOND]);
    await waitFor(() => a.session.active && notes.length === 1, "a note");
    assert.deepEqual(notes, [{
      scheduler: "replica-a",
      since: "2026-01-01T00:00:00.500Z",
      functions: ["every"],
    }]);
  } finally {
    await t.close();
  }
});
