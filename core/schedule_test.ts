import assert from "node:assert/strict";
import {
  DEFAULT_CATCH_UP_MS,
  ON_TIME_MS,
  parseDuration,
  parseSchedule,
  type Schedule,
  TickClock,
} from "./schedule.ts";
import { encodeSchedulerNote, parseSchedulerNote, tickIdOf, tickOf } from "./contract/schedule.ts";

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number) => new Date(ms).toISOString();

function schedule(value: unknown): Schedule {
  const read = parseSchedule(value);
  if (!("value" in read)) assert.fail(`expected a schedule, got: ${read.problem}`);
  return read.value;
}

function problem(value: unknown): { problem: string; at?: string } {
  const read = parseSchedule(value);
  if ("value" in read) assert.fail(`expected a problem with ${JSON.stringify(value)}`);
  return read;
}

Deno.test("parseSchedule() takes a cron pattern alone, with UTC, no payload and the default window", () => {
  assert.deepEqual(schedule("0 3 * * *"), {
    cron: "0 3 * * *",
    timeZone: "UTC",
    payload: {},
    catchUpMs: DEFAULT_CATCH_UP_MS,
  });
  assert.deepEqual(
    schedule({
      cron: "*/10 * * * * *",
      time_zone: "Europe/Berlin",
      payload: { report: "daily" },
      catch_up: "10m",
    }),
    {
      cron: "*/10 * * * * *",
      timeZone: "Europe/Berlin",
      payload: { report: "daily" },
      catchUpMs: 600_000,
    },
  );
  assert.equal(schedule({ cron: "@hourly", catch_up: 0 }).catchUpMs, 0);
});

Deno.test("parseSchedule() names the setting that is wrong and the fix", () => {
  assert.deepEqual(problem({ cron: "61 * * * *" }).at, "cron");
  assert.match(
    problem({ cron: "61 * * * *" }).problem,
    /not a cron pattern \(.*minute.*\): use 5 fields/,
  );
  assert.match(problem("* * * *").problem, /5 fields .* or 6 with seconds first/);
  assert.match(problem("0 0 0 * * * 2030").problem, /not a cron pattern/);
  assert.match(problem("0 0 30 2 *").problem, /never fires/);
  assert.deepEqual(problem({ cron: "* * * * *", time_zone: "Mars/Base" }), {
    at: "time_zone",
    problem:
      "'Mars/Base' is not a time zone this system knows: give an IANA time zone name, such as Europe/Berlin or UTC",
  });
  // An offset is no time zone: it knows nothing of daylight saving time.
  assert.equal(problem({ cron: "* * * * *", time_zone: "+01:00" }).at, "time_zone");
  assert.equal(problem({ cron: "* * * * *", catch_up: "2d" }).at, "catch_up");
  assert.equal(problem({ cron: "* * * * *", catch_up: "5 minutes" }).at, "catch_up");
  assert.equal(problem({ cron: "* * * * *", payload: [1] }).at, "payload");
  assert.equal(problem({ cron: "* * * * *", payload: { big: "x".repeat(70_000) } }).at, "payload");
  assert.deepEqual(problem({ cron: "* * * * *", every: "1s" }), {
    at: "every",
    problem: "is not a schedule setting: use cron, time_zone, payload, catch_up",
  });
  assert.match(problem({ time_zone: "UTC" }).problem, /has no 'cron'/);
  assert.match(problem(42).problem, /must be a cron pattern or a mapping/);
});

Deno.test("parseDuration() reads 0 and whole s, m, h, d only", () => {
  assert.equal(parseDuration("0"), 0);
  assert.equal(parseDuration("90s"), 90_000);
  assert.equal(parseDuration("2h"), 7_200_000);
  assert.equal(parseDuration("1d"), 86_400_000);
  for (const bad of ["", "1.5m", "-1s", "10", 10, "1w"]) {
    assert.equal(parseDuration(bad), undefined);
  }
});

Deno.test("TickClock.next() steps seconds when the pattern has six fields, minutes when five", () => {
  const seconds = new TickClock(schedule("*/15 * * * * *"));
  assert.equal(iso(seconds.next(at("2026-01-01T00:00:00.000Z"))!), "2026-01-01T00:00:15.000Z");
  assert.equal(iso(seconds.next(at("2026-01-01T00:00:14.999Z"))!), "2026-01-01T00:00:15.000Z");
  const minutes = new TickClock(schedule("*/15 * * * *"));
  assert.equal(iso(minutes.next(at("2026-01-01T00:00:00.000Z"))!), "2026-01-01T00:15:00.000Z");
});

Deno.test("TickClock.next() reads the pattern in its time zone, across daylight saving time", () => {
  const berlin = (cron: string) => new TickClock(schedule({ cron, time_zone: "Europe/Berlin" }));
  // 03:00 in Berlin is 02:00 UTC in winter and 01:00 UTC in summer.
  const three = berlin("0 3 * * *");
  assert.equal(iso(three.next(at("2026-01-10T12:00:00Z"))!), "2026-01-11T02:00:00.000Z");
  assert.equal(iso(three.next(at("2026-07-10T12:00:00Z"))!), "2026-07-11T01:00:00.000Z");
  // 2026-03-29 02:30 does not exist in Berlin (02:00 jumps to 03:00): it
  // runs at the first moment after the gap, 03:00 CEST, once.
  const gap = berlin("30 2 * * *");
  let tick = gap.next(at("2026-03-28T12:00:00Z"))!;
  assert.equal(iso(tick), "2026-03-29T01:00:00.000Z");
  assert.equal(iso(gap.next(tick)!), "2026-03-30T00:30:00.000Z");
  // 2026-10-25 02:30 happens twice in Berlin: a fixed time runs once.
  tick = gap.next(at("2026-10-24T12:00:00Z"))!;
  assert.equal(iso(tick), "2026-10-25T00:30:00.000Z");
  assert.equal(iso(gap.next(tick)!), "2026-10-26T01:30:00.000Z");
  // Every 30 minutes keeps its pace in real time through the repeated hour.
  const every = berlin("*/30 * * * *");
  const ticks: string[] = [];
  tick = at("2026-10-25T00:00:00Z");
  for (let i = 0; i < 4; i++) ticks.push(iso(tick = every.next(tick)!));
  assert.deepEqual(ticks, [
    "2026-10-25T00:30:00.000Z",
    "2026-10-25T01:00:00.000Z",
    "2026-10-25T01:30:00.000Z",
    "2026-10-25T02:00:00.000Z",
  ]);
});

Deno.test("TickClock.due() fires each tick since the last one, oldest first, when on time", () => {
  const clock = new TickClock(schedule("* * * * * *"));
  const last = at("2026-01-01T00:00:00Z");
  assert.deepEqual(clock.due(last, last + 999), { fire: [] });
  assert.deepEqual(clock.due(last, last + 3_200).fire.map(iso), [
    "2026-01-01T00:00:01.000Z",
    "2026-01-01T00:00:02.000Z",
    "2026-01-01T00:00:03.000Z",
  ]);
  // At most `max` at once; the next call goes on from the last fired.
  assert.equal(clock.due(last, last + 3_200, 2).fire.length, 2);
});

Deno.test("TickClock.due() catches up missed ticks within the window and skips older ones", () => {
  const clock = new TickClock(schedule({ cron: "0 * * * * *", catch_up: "3m" }));
  const last = at("2026-01-01T00:00:00Z");
  const now = at("2026-01-01T00:10:30Z");
  const due = clock.due(last, now);
  // 10 ticks were missed; the 3 of the last 3 minutes still fire.
  assert.deepEqual(due.fire.map(iso), [
    "2026-01-01T00:08:00.000Z",
    "2026-01-01T00:09:00.000Z",
    "2026-01-01T00:10:00.000Z",
  ]);
  assert.deepEqual(due.skipped, { from: at("2026-01-01T00:01:00Z"), until: now - 180_000 });
  // A year of per-second ticks missed is skipped without stepping through it.
  const seconds = new TickClock(schedule({ cron: "* * * * * *", catch_up: "10s" }));
  const started = performance.now();
  const yearLate = seconds.due(last, last + 365 * 86_400_000);
  assert.ok(performance.now() - started < 1000);
  // The window's both ends count: a tick exactly 10 s late still fires.
  assert.equal(yearLate.fire.length, 11);
});

Deno.test("TickClock.due() with catch_up 0 skips missed ticks but not a tick that is only a little late", () => {
  const clock = new TickClock(schedule({ cron: "0 * * * * *", catch_up: 0 }));
  const last = at("2026-01-01T00:00:00Z");
  const late = clock.due(last, at("2026-01-01T00:05:02Z"));
  assert.deepEqual(late.fire.map(iso), ["2026-01-01T00:05:00.000Z"]);
  assert.ok(late.skipped);
  const onTime = clock.due(last, at("2026-01-01T00:01:00Z") + ON_TIME_MS);
  assert.deepEqual(onTime, { fire: [at("2026-01-01T00:01:00Z")] });
});

Deno.test("tickIdOf() names a tick by its function and time, the same in every replica", () => {
  const tick = at("2026-11-29T06:00:00Z");
  assert.equal(tickIdOf("report", tick), "report@2026-11-29T06:00:00.000Z");
  assert.equal(tickIdOf("report", tick), tickIdOf("report", tick));
  assert.notEqual(tickIdOf("report", tick), tickIdOf("report", tick + 1000));
  assert.throws(() => tickIdOf("Report!", tick), TypeError);
});

Deno.test("tickOf() reads a tick time only when it is exactly one", () => {
  assert.equal(
    tickOf({ "x-schedule-tick": "2026-11-29T06:00:00.000Z" }),
    "2026-11-29T06:00:00.000Z",
  );
  for (
    const bad of [
      "2026-11-29T06:00:00Z",
      "2026-02-30T06:00:00.000Z",
      "2026-11-29T06:00:00.000Z\n",
      1764396000000,
      undefined,
    ]
  ) {
    assert.equal(tickOf({ "x-schedule-tick": bad }), null, String(bad));
  }
  assert.equal(tickOf(undefined), null);
});

Deno.test("parseSchedulerNote() reads a note back, and nothing out of bounds", () => {
  const note = {
    scheduler: "scheduler@host-1",
    since: "2026-11-29T06:00:00.000Z",
    functions: ["a"],
  };
  assert.deepEqual(parseSchedulerNote(encodeSchedulerNote(note).body), note);
  const bad = [
    { ...note, scheduler: "\u001b[2J" },
    { ...note, scheduler: "x".repeat(129) },
    { ...note, since: "yesterday" },
    { ...note, functions: ["Bad Name"] },
    { ...note, functions: Array(1001).fill("a") },
    [note],
  ];
  for (const value of bad) {
    const body = new TextEncoder().encode(JSON.stringify(value));
    assert.equal(parseSchedulerNote(body), undefined, JSON.stringify(value).slice(0, 60));
  }
});
