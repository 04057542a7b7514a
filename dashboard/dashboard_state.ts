/**
 * The dashboard's picture of the system, and how it reaches the pages: the
 * broker watch's queues and workers, the rolling figures and the recent
 * task events, the dead letters read as the operator, and the connection's
 * state (live, connecting, unavailable, or the embedded broker, which this
 * process cannot see). Pages get the whole picture as `state` at most
 * twice a second, and new task events in `tasks` batches every 250 ms.
 *
 * @module
 */

import type { SchedulerNote, WorkerInfo } from "../core/contract/mod.ts";
import type { FunctionRoute } from "../core/registry.ts";
import { type BrokerWatch, type QueueView, type SeenEvent, unknownQueues } from "./broker_watch.ts";
import type { DeadLetterDesk, DeskStatus, LetterView, ReplaySummary } from "./dead_letter_desk.ts";
import { type SseHub, sseMessage } from "./sse.ts";
import { type FunctionFigures, TaskStats } from "./task_stats.ts";

/** Task events kept for pages that connect later. */
export const RECENT_EVENTS = 200;
const STATE_EVERY_MS = 500;
const TASKS_EVERY_MS = 250;

/** Whether the dashboard sees a broker. */
export type DashboardMode = "live" | "connecting" | "unavailable" | "embedded";

/** One function, as the page shows it. */
export interface FunctionView extends QueueView {
  /** Workers that answered the last ping. */
  workers: number;
  /** The topic patterns of the events that run it (docs/events.md). */
  triggers: readonly string[];
  figures: FunctionFigures;
  letters: LetterView[];
  /** Its schedule in the registry, as `0 3 * * * (UTC)`; `null` when it has none. */
  schedule: string | null;
}

/** The scheduler replica that fires, as its last note said. */
export interface SchedulerView extends SchedulerNote {
  /** When its last note arrived (ISO 8601): it says so every 10 s while it fires. */
  seen: string;
}

/** The whole picture, sent to pages as `state`. */
export interface DashboardSnapshot {
  /** Where the broker is (password masked). */
  broker: string;
  mode: DashboardMode;
  /** What the mode means for what is shown, and how to change it. */
  notice: string | null;
  at: string;
  functions: FunctionView[];
  workers: WorkerInfo[];
  /** The active scheduler replica, once one said so. */
  scheduler: SchedulerView | null;
  deadLetters: DeskStatus;
  warnings: string[];
  /** Task events received since start. */
  eventsSeen: number;
}

/** Options for {@linkcode DashboardState}. */
export interface DashboardStateOptions {
  functions: ReadonlyMap<string, FunctionRoute>;
  /** Each function's triggers, from the registry. @default {none} */
  triggers?: ReadonlyMap<string, readonly string[]>;
  /** Each scheduled function's schedule, as people read it (`describeSchedule`). */
  schedules?: ReadonlyMap<string, string>;
  broker: string;
  hub: SseHub;
  /** Reads and replays dead letters; absent when there is no broker to read them from. */
  desk?: DeadLetterDesk;
}

/** See the module documentation. */
export class DashboardState {
  readonly #options: DashboardStateOptions;
  readonly #stats = new TaskStats();
  readonly #recent: SeenEvent[] = [];
  #batch: SeenEvent[] = [];
  #watch: BrokerWatch | undefined;
  #mode: DashboardMode = "connecting";
  #notice: string | null = null;
  #eventsSeen = 0;
  #scheduler: SchedulerView | null = null;
  #stateTimer: ReturnType<typeof setTimeout> | undefined;
  #tasksTimer: ReturnType<typeof setTimeout> | undefined;
  /** Dead-letter depth per queue when its letters were last read. */
  readonly #readAt = new Map<string, number | null>();

  constructor(options: DashboardStateOptions) {
    this.#options = options;
  }

  /** The broker watch now feeding the picture. */
  attach(watch: BrokerWatch): void {
    this.#watch = watch;
    this.setMode("live", null);
  }

  /** The watch stopped (the connection was lost): the picture says so. */
  detach(mode: DashboardMode, notice: string): void {
    this.#watch = undefined;
    this.setMode(mode, notice);
  }

  setMode(mode: DashboardMode, notice: string | null): void {
    this.#mode = mode;
    this.#notice = notice;
    this.changed();
  }

  /** A task event arrived. */
  onEvent(event: SeenEvent): void {
    this.#eventsSeen++;
    this.#stats.add(event);
    this.#recent.push(event);
    if (this.#recent.length > RECENT_EVENTS) this.#recent.shift();
    this.#batch.push(event);
    // Pages keep as many rows: under heavy load older events of a batch would only be dropped there.
    if (this.#batch.length > RECENT_EVENTS) this.#batch.shift();
    this.#tasksTimer ??= setTimeout(() => {
      this.#tasksTimer = undefined;
      const batch = this.#batch;
      this.#batch = [];
      this.#options.hub.send("tasks", batch);
    }, TASKS_EVERY_MS);
  }

  /** The active scheduler replica said so. */
  onScheduler(note: SchedulerNote): void {
    this.#scheduler = { ...note, seen: new Date().toISOString() };
    this.changed();
  }

  /** Something changed: pages get the new picture soon, and dead letters are read again if their count moved. */
  changed(): void {
    this.#rereadLetters();
    this.#stateTimer ??= setTimeout(() => {
      this.#stateTimer = undefined;
      this.#options.hub.send("state", this.snapshot());
    }, STATE_EVERY_MS);
  }

  /** What a page gets first: the picture and the recent events. */
  opening(): Uint8Array[] {
    return [sseMessage("state", this.snapshot()), sseMessage("tasks", this.#recent)];
  }

  /**
   * What the task events keep in memory: sent times waiting for their
   * task's end (with the characters of their keys), and the recent events
   * (with the characters of their JSON). Each is bounded whatever is sent.
   */
  retained(): {
    openTasks: number;
    openTaskChars: number;
    recentEvents: number;
    recentChars: number;
  } {
    return {
      openTasks: this.#stats.openTasks,
      openTaskChars: this.#stats.openTaskChars,
      recentEvents: this.#recent.length,
      recentChars: JSON.stringify(this.#recent).length,
    };
  }

  /** The recent task events, oldest first. */
  recent(): SeenEvent[] {
    return [...this.#recent];
  }

  snapshot(): DashboardSnapshot {
    const watch = this.#watch;
    const workers = watch?.workers() ?? [];
    const queues = watch?.queues() ?? unknownQueues(this.#options.functions);
    const warnings: string[] = [];
    const silent = workers.filter((w) => w.events === false).map((w) => w.worker);
    if (silent.length > 0) {
      warnings.push(
        `${silent.join(", ")} publish${
          silent.length === 1 ? "es" : ""
        } no task events, so their tasks are missing from the stream and figures: start them with TASK_EVENTS=true`,
      );
    }
    if (watch && watch.forgedEvents + watch.forgedPongs > 0) {
      warnings.push(
        `Ignored ${watch.forgedEvents} task events and ${watch.forgedPongs} pongs from broker users that may not speak for the function they name`,
      );
    }
    const desk = this.#options.desk;
    return {
      broker: this.#options.broker,
      mode: this.#mode,
      notice: this.#notice,
      at: new Date().toISOString(),
      functions: queues.map((queue) => ({
        ...queue,
        workers: workers.filter((w) => w.queue === queue.queue).length,
        triggers: this.#options.triggers?.get(queue.function) ?? [],
        figures: this.#stats.figures(queue.function),
        letters: desk?.letters(queue.queue) ?? [],
        schedule: this.#options.schedules?.get(queue.function) ?? null,
      })),
      workers,
      scheduler: this.#scheduler,
      deadLetters: desk?.status ??
        { available: false, problem: "No broker: nothing to read dead letters from" },
      warnings,
      eventsSeen: this.#eventsSeen,
    };
  }

  /** Replays `fn`'s dead letters as the operator user. */
  async replay(fn: string): Promise<ReplaySummary> {
    const route = this.#options.functions.get(fn);
    const desk = this.#options.desk;
    if (!route) throw new TypeError(`Cannot replay the dead letters of '${fn}': no such function`);
    if (!desk || !this.#watch) {
      throw new TypeError(`Cannot replay the dead letters of '${fn}': no broker is connected`);
    }
    const summary = await desk.replay(fn, route.queue, route.user);
    await this.#watch.poll().catch(() => {});
    this.changed();
    return summary;
  }

  #rereadLetters(): void {
    const desk = this.#options.desk;
    if (!desk || !this.#watch) return;
    for (const queue of this.#watch.queues()) {
      if (this.#readAt.get(queue.queue) === queue.deadLetters) continue;
      this.#readAt.set(queue.queue, queue.deadLetters);
      if (!queue.deadLetters && desk.letters(queue.queue).length === 0) continue;
      // On failure the desk's status says why; it reads again when the count moves.
      desk.refresh(queue.queue).then(() => this.changed(), () => this.changed());
    }
  }

  /** Stops the timers. */
  close(): void {
    clearTimeout(this.#stateTimer);
    clearTimeout(this.#tasksTimer);
  }
}
