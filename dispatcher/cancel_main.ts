/**
 * `deno task cancel <call id>...`: cancels calls by id (the client's
 * `cancel()`, `client/cancel_call.ts`): a call not started never starts, a
 * running attempt is stopped, and the caller gets a `Cancelled` answer.
 * Connects as the compose stack's `dispatcher` (who may cancel its own
 * calls), or `operator` with `--operator` (who may cancel any).
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { CancelResult } from "../client/cancel_call.ts";
import { TaskClient } from "../client/task_client.ts";
import { OPERATOR_USER } from "../core/contract/users.ts";
import {
  BROKER_OPTIONS,
  brokerHelp,
  brokerSettings,
  type CliIo,
  type Command,
  CONFIG_OPTION,
  escapeControls,
  escapeJsonControls,
  EXIT,
  EXIT_HELP_BUG,
  EXIT_HELP_UNAVAILABLE,
  EXIT_HELP_USAGE,
  JSON_HELP_OPTIONS,
  type OptionValues,
  runCommand,
  runMain,
  UsageError,
  wholeNumberFlag,
} from "./cli/mod.ts";
import { loadConfig } from "./config/load_config.ts";

/** Exit codes of this tool beyond the shared ones. */
export const CANCEL_EXIT = {
  /** The call had finished, or was cancelled already: nothing to cancel. */
  nothing: 1,
  /** This broker user may not cancel the call. */
  refused: 4,
} as const;

const HELP = `Usage: deno task cancel [options] <call id>...

Cancels calls by their id (the task id of their requests, as deno task
dispatch, the dead letters and the workers' logs show it). A call that has
not started never starts: a worker that receives it later (queued, retried,
or sent to a worker that started after the cancel) dead-letters it as
cancelled. A running attempt is stopped: the handler's signal fires, and a
sandbox that does not yield within a second is ended. Either way its caller
gets a Cancelled answer. Only the broker user that sent a call, operator or
admin may cancel it; cancelling twice or a finished call changes nothing,
and says so.

The workers answer within --wait-ms: one that stopped the call, or knows
how it ended, says so; silence means no worker runs it now.

Options:
  --operator           connect as the compose stack's operator, who may cancel
                       any call (default: dispatcher, who may cancel its own)
  --wait-ms MS         how long to listen for the workers' answers (default: 1000)
  --config PATH        where the functions and their workers' users are
                       (default: test-config.yml)
${brokerHelp("dispatcher")}
  --json               print one JSON document on stdout instead of text
  -h, --help           show this help

Exit codes:
  0  cancelled: its running attempt was stopped, or no worker runs it and it
     will not start
  1  nothing to cancel: the call had finished, or was cancelled already
  ${EXIT_HELP_USAGE}
  ${EXIT_HELP_UNAVAILABLE}
  4  refused: this broker user did not send the call (use that user, or --operator)
  ${EXIT_HELP_BUG}
  With several ids, the highest of their codes (4, then 1, then 0).

Examples:
  deno task cancel 1ff9d096-ae6e-4c3c-8c4b-c9f7cc1fdf1b
  deno task cancel --operator nightly.17 nightly.18`;

const CANCEL_OPTIONS = {
  id: { type: "string", multiple: true },
  operator: { type: "boolean", default: false },
  "wait-ms": { type: "string" },
  ...CONFIG_OPTION,
  ...BROKER_OPTIONS,
  ...JSON_HELP_OPTIONS,
} as const;

function parseFlags(values: OptionValues<typeof CANCEL_OPTIONS>) {
  const ids = values.id ?? [];
  if (ids.length === 0 && !values.help) {
    throw new UsageError(
      "Cannot cancel without a call id: run 'deno task cancel <call id>', see --help",
    );
  }
  return { ...values, ids, waitMs: wholeNumberFlag(values["wait-ms"], "--wait-ms", 1000, 1) };
}

type CancelFlags = ReturnType<typeof parseFlags>;

/** What is said of one call, and the exit code it earns. */
function describe(result: CancelResult, user: string): { line: string; code: number } {
  const id = escapeControls(result.id);
  const where = result.answers.find((answer) => answer.status === result.status)?.worker;
  const on = where ? ` on ${escapeControls(where)}` : "";
  switch (result.status) {
    case "stopped":
      return {
        line:
          `Cancelled call ${id}: its running attempt${on} was stopped; its caller gets Cancelled`,
        code: EXIT.passed,
      };
    case "not_running":
      return {
        line:
          `Cancelled call ${id}: no worker runs it now, and it will not start (queued or retried later, it is dead-lettered as cancelled and its caller gets Cancelled)`,
        code: EXIT.passed,
      };
    case "finished":
      return {
        line: `Nothing to cancel: call ${id} had finished${on} (${
          escapeControls(result.outcome ?? "ended")
        })`,
        code: CANCEL_EXIT.nothing,
      };
    case "already_cancelled":
      return {
        line: `Nothing to cancel: call ${id} was cancelled already`,
        code: CANCEL_EXIT.nothing,
      };
    case "refused":
      return {
        line:
          `Cannot cancel call ${id} as broker user '${user}' did not send it: cancel it as the user that did, or with --operator`,
        code: CANCEL_EXIT.refused,
      };
  }
}

const CANCEL: Command<typeof CANCEL_OPTIONS, CancelFlags, CancelFlags> = {
  name: "cancel",
  help: HELP,
  options: CANCEL_OPTIONS,
  parse: parseFlags,
  prepare: (flags) => Promise.resolve(flags),
  broker: (flags) => ({
    settings: brokerSettings(flags),
    ...(flags.operator && { user: OPERATOR_USER }),
    connectionName: "cancel",
  }),
  async run(flags, opened, { io, complain }) {
    const config = await loadConfig(flags.config);
    const client = await TaskClient.open(opened.broker, {
      functions: config.functions,
      label: opened.label,
    });
    try {
      const results: CancelResult[] = [];
      let code: number = EXIT.passed;
      if (!flags.json) io.out(`Broker: ${opened.label}`);
      for (const id of flags.ids) {
        const result = await client.cancel(id, { waitMs: flags.waitMs });
        results.push(result);
        const said = describe(result, client.user);
        // The worst first: a refusal, then nothing to cancel.
        if (said.code === CANCEL_EXIT.refused || code === EXIT.passed) code = said.code;
        if (flags.json) continue;
        if (said.code === CANCEL_EXIT.refused) complain(said.line);
        else io.out(said.line);
      }
      if (flags.json) {
        io.out(
          escapeJsonControls(JSON.stringify({ broker: opened.label, calls: results }, null, 2)),
        );
      }
      return code;
    } finally {
      await client.close();
    }
  },
};

/**
 * The arguments with each call id given as `--id`: the shared runner reads
 * flags only, and a call id is this tool's one positional argument.
 */
export function idsAsFlags(args: string[]): string[] {
  let tokens;
  try {
    ({ tokens } = parseArgs({
      args,
      options: CANCEL_OPTIONS,
      strict: false,
      allowPositionals: true,
      tokens: true,
    }));
  } catch {
    return args;
  }
  const flags: string[] = [];
  const ids: string[] = [];
  for (const token of tokens ?? []) {
    if (token.kind === "positional") ids.push(token.value);
    else if (token.kind === "option") {
      flags.push(token.rawName + (token.inlineValue ? `=${token.value}` : ""));
      if (token.value !== undefined && !token.inlineValue) flags.push(token.value);
    }
    // After "--" every argument is a positional token: a call id.
  }
  return [...flags, ...ids.flatMap((id) => ["--id", id])];
}

/** Runs the cancel tool with `args`; resolves with its exit code. */
export function main(args: string[], io: CliIo): Promise<number> {
  return runCommand(CANCEL, idsAsFlags(args), io);
}

if (import.meta.main) await runMain(CANCEL, idsAsFlags(Deno.args));
