/**
 * The options of `deno task dispatch` and their checks, apart from the entry
 * point so that the run (`dispatch_run.ts`) can take the checked flags.
 *
 * @module
 */

import { LOG_LEVELS, type LogFormat, type LogLevel } from "../core/log.ts";
import {
  BROKER_OPTIONS,
  checkLocal,
  CONFIG_OPTION,
  DOCUMENT_OPTIONS,
  type OptionValues,
  positiveNumberFlag,
  REPLIES_OPTION,
  repliesFlag,
  UsageError,
  wholeNumberFlag,
} from "./cli/mod.ts";
import { DEFAULT_STREAM_WINDOW, MAX_STREAM_WINDOW } from "../client/stream.ts";

/** Every option of `deno task dispatch`. */
export const DISPATCH_OPTIONS = {
  ...CONFIG_OPTION,
  scenario: { type: "string" },
  list: { type: "boolean", default: false },
  ...BROKER_OPTIONS,
  ...REPLIES_OPTION,
  local: { type: "boolean", default: false },
  "wait-workers": { type: "string" },
  "timeout-ms": { type: "string" },
  window: { type: "string" },
  quiet: { type: "boolean", short: "q", default: false },
  junit: { type: "string" },
  html: { type: "string" },
  "log-level": { type: "string", default: "error" },
  "log-format": { type: "string", default: "text" },
  ...DOCUMENT_OPTIONS,
} as const;

export function parseFlags(values: OptionValues<typeof DISPATCH_OPTIONS>) {
  checkLocal(values);
  if (values["no-save"] && values.out !== undefined) {
    throw new UsageError("Cannot use --out with --no-save: choose one");
  }
  const logLevel = values["log-level"] as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new UsageError(
      `Cannot use --log-level '${logLevel}': use one of ${LOG_LEVELS.join(", ")}`,
    );
  }
  const logFormat = values["log-format"] as LogFormat;
  if (logFormat !== "text" && logFormat !== "json") {
    throw new UsageError(`Cannot use --log-format '${logFormat}': use text or json`);
  }
  for (const flag of ["out", "junit", "html"] as const) {
    if (values[flag] === "") throw new UsageError(`Cannot use --${flag} '': give a file path`);
  }
  const waitSeconds = positiveNumberFlag(values["wait-workers"], "--wait-workers") ?? 10;
  const timeoutMs = positiveNumberFlag(values["timeout-ms"], "--timeout-ms");
  const replies = repliesFlag(values.replies);
  const window = wholeNumberFlag(
    values.window,
    "--window",
    DEFAULT_STREAM_WINDOW,
    1,
    MAX_STREAM_WINDOW,
  );
  return { ...values, logLevel, logFormat, waitMs: waitSeconds * 1000, timeoutMs, replies, window };
}

/** The flags of `deno task dispatch`, checked. */
export type DispatchFlags = ReturnType<typeof parseFlags>;
