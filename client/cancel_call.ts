/**
 * A caller's side of cancellation (`core/contract/cancel.ts`): publish the
 * cancellation of a call to the stream every worker reads, then listen a
 * moment for what the workers say, and sum it up. A worker answers only
 * when it acted or knows the call; silence means no worker runs it now, and
 * the call will not start (it waits in a queue, or was never sent, or
 * finished on a worker that has forgotten it since).
 *
 * @module
 */

import { type Broker, BrokerUnavailableError } from "../core/broker/mod.ts";
import {
  type CancelAnswer,
  CANCELLATIONS_STREAM,
  CANCELLATIONS_STREAM_OPTIONS,
  encodeCancel,
  type Message,
  parseCancelAnswer,
} from "../core/contract/mod.ts";

/**
 * What a cancellation came to, the most telling answer first:
 *
 * - `stopped`: a worker was running an attempt of the call, and stopped it;
 *   the caller gets a `Cancelled` answer;
 * - `refused`: a worker runs it, but this user may not cancel it (only the
 *   user that sent it, an operator or the administrator may);
 * - `finished`: it had ended already (its `outcome`); nothing was cancelled;
 * - `already_cancelled`: it was cancelled before;
 * - `not_running`: no worker runs it now; it will not start, should it wait
 *   in a queue or be retried, and its caller gets `Cancelled` when a worker
 *   reaches it.
 */
export type CancelOutcome =
  | "stopped"
  | "refused"
  | "finished"
  | "already_cancelled"
  | "not_running";

/** What {@linkcode cancelCall} resolves with. */
export interface CancelResult {
  /** The call's id. */
  id: string;
  status: CancelOutcome;
  /** For `finished`: how the call ended (`success` or `error`), as the worker remembers it. */
  outcome?: string;
  /** Each worker's answer, from the functions' workers only. */
  answers: CancelAnswer[];
}

/** Options for {@linkcode TaskClient.cancel}. */
export interface CancelOptions {
  /**
   * How long to listen for the workers' answers.
   * @default {1000}
   */
  waitMs?: number;
  /** When the cancellation may be forgotten: the call's deadline, when known. */
  until?: number;
}

/** What {@linkcode cancelCall} needs of the client. */
export interface CancelChannel {
  broker: Broker;
  /**
   * Publishes what `build` makes for a fresh correlation id (with Direct
   * Reply-to as its reply address) to `queue`, and collects the answers that
   * carry that id until `timeoutMs` or `enough`.
   */
  ask(
    queue: string,
    build: (correlationId: string, replyTo: string) => Message,
    options: { timeoutMs: number; enough?: (answers: Message[]) => boolean },
  ): Promise<Message[]>;
  /** Whether an answer's `user_id` is a worker's that the client believes. */
  believes(userId: string | undefined): boolean;
}

const RANK: CancelOutcome[] = ["stopped", "refused", "finished", "already_cancelled"];

/** Makes sure the stream exists, or says why a cancellation cannot be sent. */
async function checkStream(broker: Broker): Promise<void> {
  if (await broker.inspectQueue(CANCELLATIONS_STREAM).catch(() => null)) return;
  // A broker of one user (guest) lets anyone declare it; the stack's broker makes it at start.
  await broker.declareQueue(CANCELLATIONS_STREAM, CANCELLATIONS_STREAM_OPTIONS).catch(() => {});
  if (await broker.inspectQueue(CANCELLATIONS_STREAM).catch(() => null)) return;
  throw new BrokerUnavailableError(
    `Cannot cancel as the broker has no stream '${CANCELLATIONS_STREAM}': start a worker (it declares the stream where it may), or load the stack's definitions, which make it`,
  );
}

/** Cancels the call `id`; see the module documentation. */
export async function cancelCall(
  channel: CancelChannel,
  id: string,
  options: CancelOptions = {},
): Promise<CancelResult> {
  // Refuses an id no call can have before anything is sent.
  encodeCancel(id);
  await checkStream(channel.broker);
  const read = (messages: Message[]) =>
    messages.flatMap((message) => {
      if (!channel.believes(message.properties.userId)) return [];
      const answer = parseCancelAnswer(message);
      return answer.ok && answer.value.task_id === id ? [answer.value] : [];
    });
  const messages = await channel.ask(
    CANCELLATIONS_STREAM,
    (correlationId, replyTo) => encodeCancel(id, { replyTo, correlationId, until: options.until }),
    {
      timeoutMs: options.waitMs ?? 1000,
      // A stop or an end is the whole story; the rest may come from several replicas.
      enough: (got) => read(got).some((a) => a.status === "stopped" || a.status === "finished"),
    },
  );
  const answers = read(messages);
  const best = RANK.find((status) => answers.some((answer) => answer.status === status));
  const finished = answers.find((answer) => answer.status === "finished");
  return {
    id,
    status: best ?? "not_running",
    ...(best === "finished" && finished?.outcome !== undefined && { outcome: finished.outcome }),
    answers,
  };
}
