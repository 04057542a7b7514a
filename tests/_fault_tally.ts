/**
 * Honest fault figures: counted from both ends, so that a broken system
 * changes them. The caller's side counts every reply on the wire, before
 * any de-duplication; the workers' side counts the tasks they finished,
 * from their own logs. A task is lost when no reply for it ever reached the
 * wire; a duplicate reached the caller when the caller was handed more than
 * one outcome for one id. That last figure is counted only where a repeat
 * could show: in what a program prints or saves per task (the dispatcher's
 * `Task finished` lines, its run document), never from promises, each of
 * which settles once whatever the wire carried.
 *
 * @module
 */

import type { Broker } from "../core/broker/mod.ts";
import type { Message } from "../core/contract/mod.ts";
import { parseReply, RESULT_MESSAGE_TYPE } from "../core/contract/mod.ts";

/** Every reply seen on a reply queue, by correlation id, duplicates included. */
export interface WireLog {
  /** Final replies per task id. */
  replies: Map<string, number>;
  /** Task ids with at least one successful reply. */
  succeeded: Set<string>;
}

/**
 * `broker`, but each message on its reply queue is first counted in the
 * returned log: the tap sits below any client, so nothing the client drops
 * escapes it.
 */
export function tapReplies(broker: Broker): { broker: Broker; wire: WireLog } {
  const wire: WireLog = { replies: new Map(), succeeded: new Set() };
  const tapped = withReplyTap(broker, (message) => {
    const id = message.properties.correlationId;
    if (id === undefined || message.properties.type !== RESULT_MESSAGE_TYPE) return;
    wire.replies.set(id, (wire.replies.get(id) ?? 0) + 1);
    const parsed = parseReply(message.body);
    if (parsed.ok && parsed.value.status === "success") wire.succeeded.add(id);
  });
  return { broker: tapped, wire };
}

/** `broker`, with `tap` called first for each message on its reply queue. */
export function withReplyTap(broker: Broker, tap: (message: Message) => void): Broker {
  return new Proxy(broker, {
    get(target, key) {
      if (key === "openReplyQueue") {
        return (onMessage: (message: Message) => void) =>
          target.openReplyQueue((message) => {
            tap(message);
            onMessage(message);
          });
      }
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** How many times each task id appears in workers' JSON log lines with `msg`. */
export function countLogged(lines: string[], msg: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of lines) {
    if (!line.startsWith("{") || !line.includes(`"msg":"${msg}"`)) continue;
    const id = JSON.parse(line).task_id;
    if (typeof id === "string") counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

/** The figures a fault step reports and asserts. */
export interface FaultFigures {
  sent: number;
  /** Ids with a successful reply on the wire. */
  completed: number;
  /** Ids sent that never got a reply on the wire. */
  lost: number;
  /** Replies on the wire beyond the first for an id (a redelivered task answered twice). */
  duplicates_on_wire: number;
  /**
   * Outcomes handed to the caller beyond the first for an id: must be 0.
   * Present only when the tally was given outcomes that can repeat.
   */
  duplicates_to_caller?: number;
  /** Tasks the workers logged as finished, retries and re-runs included. */
  finished_by_workers: number;
}

/** Counts the figures of one step from both ends. */
export function tallyFaults(input: {
  sent: readonly string[];
  wire: WireLog;
  /**
   * The task id of each outcome the caller was handed, one per line or
   * entry of its output, where a repeat would show; left out for calls
   * whose outcome is a promise.
   */
  handed?: readonly string[];
  /** Finished tasks per id, from the workers' logs. */
  finished: Map<string, number>;
}): FaultFigures {
  const excess = (counts: Map<string, number>) =>
    [...counts.values()].reduce((sum, n) => sum + Math.max(0, n - 1), 0);
  const sent = new Set(input.sent);
  return {
    sent: sent.size,
    completed: [...sent].filter((id) => input.wire.succeeded.has(id)).length,
    lost: [...sent].filter((id) => !input.wire.replies.has(id)).length,
    duplicates_on_wire: excess(input.wire.replies),
    ...(input.handed && { duplicates_to_caller: excess(countIds(input.handed)) }),
    finished_by_workers: [...input.finished.entries()]
      .filter(([id]) => sent.has(id))
      .reduce((sum, [, n]) => sum + n, 0),
  };
}

function countIds(ids: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}
