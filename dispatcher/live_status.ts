/**
 * The live status of a run: one line per state change of a task, as it
 * happens, with the time of day to the millisecond:
 *
 * ```
 * [21:28:56.041] SENT      task_a  to queue_a as 5f0c1a2b-…
 * [21:28:56.045] STARTED   task_a  on task_a@289480f3c076-6 (attempt 1)
 * [21:28:56.150] RETRY 1/3 task_a  SimulatedFailure: … (next attempt in 0.200 s)
 * [21:28:56.560] SUCCESS   task_a  in 0.506s on task_a@289480f3c076-6
 * ```
 *
 * @module
 */

import type { TaskProgress } from "../core/contract/mod.ts";
import type { DispatchListener, TaskOutcome } from "./dispatch_all.ts";
import { escapeControls, type Painter } from "./cli/mod.ts";
import type { TaskSpec } from "./config/load_config.ts";
import { clockTime } from "./report/mod.ts";

/** Options for {@linkcode createLiveStatus}. */
export interface LiveStatusOptions {
  /** Receives each finished line. */
  write: (line: string) => void;
  paint: Painter;
  /** Labels are padded to this width, so that columns line up. */
  labelWidth: number;
  /** The clock, for tests. @default {() => new Date()} */
  now?: () => Date;
}

const STATE_WIDTH = 9; // "RETRY 1/3"

function secondsShort(ms: number): string {
  return `${(ms / 1000).toFixed(3)}s`;
}

/** A {@linkcode DispatchListener} that writes a line per state change. */
export function createLiveStatus(options: LiveStatusOptions): DispatchListener {
  const { paint, write } = options;
  const now = options.now ?? (() => new Date());
  const line = (state: string, color: (text: string) => string, label: string, text: string) =>
    write(
      `${paint.dim(`[${clockTime(now())}]`)} ${color(state.padEnd(STATE_WIDTH))} ${
        label.padEnd(options.labelWidth)
      }  ${text}`,
    );
  return {
    onSent(spec: TaskSpec, taskId: string) {
      line("SENT", paint.dim, spec.label, paint.dim(`to ${spec.queue} as ${taskId}`));
    },
    onProgress(spec: TaskSpec, progress: TaskProgress) {
      if (progress.event === "started") {
        line(
          "STARTED",
          paint.info,
          spec.label,
          `on ${escapeControls(String(progress.worker))} (attempt ${progress.attempt})`,
        );
        return;
      }
      const max = progress.max_retries ?? "?";
      const reason = progress.error
        ? escapeControls(`${progress.error.type}: ${progress.error.message}`)
        : "failed";
      const next = progress.delay_ms === undefined
        ? ""
        : ` (next attempt in ${secondsShort(progress.delay_ms)})`;
      line(`RETRY ${progress.attempt}/${max}`, paint.warn, spec.label, `${reason}${next}`);
    },
    onDone(outcome: TaskOutcome) {
      const { spec, reply } = outcome;
      const verdict = outcome.passed
        ? ""
        : paint.bad(` - does not pass: ${escapeControls(String(outcome.problem))}`);
      if (!reply) {
        // A timeout never passes: no verdict to add.
        line("TIMEOUT", paint.bad, spec.label, `no reply within ${spec.timeoutMs} ms`);
      } else if (reply.status === "success") {
        line(
          "SUCCESS",
          paint.ok,
          spec.label,
          `in ${secondsShort(reply.duration_ms)} on ${
            escapeControls(String(reply.worker))
          }${verdict}`,
        );
      } else {
        line(
          "FAILED",
          paint.bad,
          spec.label,
          `${
            escapeControls(`${reply.error?.type}: ${reply.error?.message}`)
          } (attempts: ${reply.attempts})${verdict}`,
        );
      }
    },
  };
}
