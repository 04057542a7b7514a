/**
 * The dashboard's dead letters: what each function's `<queue>.dlq` holds
 * (reason, error, attempts, body) and the replay button, both done as the
 * least-privileged `operator` user of `deno task dlq` on a connection of
 * their own: the dashboard's own user may read no dead letter. Listing takes
 * each letter and gives it back (`listDeadLetters`), so it runs only when a
 * queue's depth changed or on a replay, never on a timer; one operation at
 * a time. A replay sends back only letters that prove their origin
 * (`dead_letter_trust.ts`), to the queue the dead-letter queue belongs to.
 *
 * @module
 */

import type { Broker } from "../core/broker/mod.ts";
import { type DeadLetter, deadLetterQueueOf } from "../core/contract/mod.ts";
import { letterPolicy } from "../dispatcher/dead_letter_trust.ts";
import { listDeadLetters, replayDeadLetters } from "../dispatcher/dead_letters.ts";

/** Letters shown per function. */
export const LETTERS_SHOWN = 10;
/** Characters of a letter's body shown. */
const BODY_CHARS = 300;

/** A dead letter as the page shows it. */
export interface LetterView {
  reason: string;
  errorType: string;
  errorMessage: string;
  attempts: number | null;
  at: string | null;
  worker: string | null;
  taskId: string | null;
  body: string;
}

/** What a replay did. */
export interface ReplaySummary {
  function: string;
  queue: string;
  replayed: number;
  /** Letters left as they do not prove their origin, with why. */
  refused: { taskId: string | null; why: string }[];
  /** The broker user that replayed them. */
  as: string;
}

/** Whether letters can be read and replayed, and as whom or why not. */
export interface DeskStatus {
  available: boolean;
  /** The operator connection's user, once connected. */
  as?: string;
  /** Why not, with the fix. */
  problem?: string;
}

function viewOf(letter: DeadLetter): LetterView {
  return {
    reason: letter.reason,
    errorType: letter.errorType,
    errorMessage: letter.errorMessage,
    attempts: letter.attempts,
    at: letter.at,
    worker: letter.worker,
    taskId: letter.taskId,
    body: letter.body.length > BODY_CHARS ? `${letter.body.slice(0, BODY_CHARS)}…` : letter.body,
  };
}

/** The dead letters' desk; see the module documentation. */
export class DeadLetterDesk {
  readonly #open: () => Promise<Broker>;
  #broker: Broker | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #status: DeskStatus = { available: true };
  readonly #letters = new Map<string, LetterView[]>();

  /** @param open Connects as the operator user; its error's message is shown as the problem. */
  constructor(open: () => Promise<Broker>) {
    this.#open = open;
  }

  /** Whether letters can be read, as whom, or why not. */
  get status(): DeskStatus {
    return this.#status;
  }

  /** The letters last read of `queue` (up to {@linkcode LETTERS_SHOWN}). */
  letters(queue: string): LetterView[] {
    return this.#letters.get(queue) ?? [];
  }

  /** Reads the first letters of `queue`'s dead-letter queue again. */
  refresh(queue: string): Promise<void> {
    return this.#serial(async (broker) => {
      if (await broker.inspectQueue(deadLetterQueueOf(queue)) === null) {
        this.#letters.delete(queue);
        return;
      }
      const letters = await listDeadLetters(broker, deadLetterQueueOf(queue), {
        limit: LETTERS_SHOWN,
      });
      this.#letters.set(queue, letters.map(viewOf));
    });
  }

  /**
   * Replays every letter of `fn`'s dead-letter queue that proves its origin
   * (its workers run as `workerUser`), then reads the queue again.
   */
  replay(fn: string, queue: string, workerUser: string): Promise<ReplaySummary> {
    return this.#serial(async (broker) => {
      const result = await replayDeadLetters(broker, deadLetterQueueOf(queue), {
        limit: Number.MAX_SAFE_INTEGER,
        policy: letterPolicy(workerUser, broker.user),
      });
      const letters = await listDeadLetters(broker, deadLetterQueueOf(queue), {
        limit: LETTERS_SHOWN,
      });
      this.#letters.set(queue, letters.map(viewOf));
      return {
        function: fn,
        queue,
        replayed: result.replayed.length,
        refused: result.refused.map(({ letter, why }) => ({ taskId: letter.taskId, why })),
        as: broker.user,
      };
    });
  }

  /** Closes the operator connection. */
  async close(): Promise<void> {
    await this.#queue.catch(() => {});
    await this.#broker?.close().catch(() => {});
    this.#broker = undefined;
  }

  /** Runs `work` after every earlier operation, on a connection opened (again) as needed. */
  #serial<T>(work: (broker: Broker) => Promise<T>): Promise<T> {
    const run = this.#queue.catch(() => {}).then(async () => {
      const broker = await this.#connect();
      return await work(broker);
    });
    this.#queue = run;
    return run;
  }

  async #connect(): Promise<Broker> {
    if (this.#broker) return this.#broker;
    try {
      const broker = await this.#open();
      this.#broker = broker;
      this.#status = { available: true, as: broker.user };
      broker.closed.then(() => {
        if (this.#broker === broker) this.#broker = undefined;
      });
      return broker;
    } catch (error) {
      this.#status = { available: false, problem: (error as Error).message };
      throw error;
    }
  }
}
