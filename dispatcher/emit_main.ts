/**
 * `deno task emit <type> --data '{...}'`: publishes one event (docs/events.md)
 * to the events exchange as the dispatcher's broker user; each function
 * whose triggers match its type runs once with the data as its payload.
 *
 * @module
 */

import { PublishForbiddenError } from "../core/broker/mod.ts";
import { type CloudEventMode, isEventType } from "../core/contract/mod.ts";
import { DISPATCHER_USER } from "../core/contract/users.ts";
import { buildEvent, emitEvent } from "../client/emit.ts";
import {
  BROKER_OPTIONS,
  brokerHelp,
  brokerSettings,
  type CliIo,
  type Command,
  EXIT,
  EXIT_HELP_BUG,
  EXIT_HELP_UNAVAILABLE,
  JSON_HELP_OPTIONS,
  type OptionValues,
  runCommand,
  runMain,
  UsageError,
} from "./cli/mod.ts";

const HELP = `Usage: deno task emit <type> [options]

Emits one CloudEvents 1.0 event of <type> (such as order.created) to the
events exchange: every function whose triggers match the type runs once,
with the data as its payload and the event's attributes as context.event.
It prints the event's id once the broker has the event; no function answers.

Options:
  --data JSON       the event's data, a JSON object (default {})
  --id ID           the event's id (default a new UUID): emit the same event
                    again with the same id, and each function runs it once
  --source URI      who emits it (default /clients/<broker user>)
  --subject TEXT    what it is about, such as an order's id
  --deadline TIME   an RFC 3339 time after which it is not run (dead-lettered)
  --binary          write it in binary mode (ce- headers) instead of structured
${brokerHelp(DISPATCHER_USER)}
  --json            print {"id": ..., "type": ...} instead of a line
  -h, --help        show this help

Exit codes:
  0  emitted: the broker confirmed it
  1  refused: this broker user may not emit the type (functions/registry.yaml,
     events.emitters)
  2  bad option, data or credentials file
  ${EXIT_HELP_UNAVAILABLE}
  ${EXIT_HELP_BUG}

Examples:
  deno task emit demo.greet
  deno task emit order.created --data '{"order": 42}' --subject order-42`;

const EMIT_OPTIONS = {
  data: { type: "string", default: "{}" },
  id: { type: "string" },
  source: { type: "string" },
  subject: { type: "string" },
  deadline: { type: "string" },
  binary: { type: "boolean", default: false },
  ...BROKER_OPTIONS,
  ...JSON_HELP_OPTIONS,
} as const;

interface EmitFlags {
  values: OptionValues<typeof EMIT_OPTIONS>;
  type: string;
  data: Record<string, unknown>;
  mode: CloudEventMode;
}

function parseFlags(values: OptionValues<typeof EMIT_OPTIONS>, positionals: string[]): EmitFlags {
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length === 0
        ? "Cannot emit without an event type: run 'deno task emit demo.greet'"
        : `Cannot emit '${positionals.join(" ")}': give one event type, such as order.created`,
    );
  }
  const [type] = positionals;
  if (!isEventType(type)) {
    throw new UsageError(
      `Cannot emit '${
        String(type).slice(0, 80)
      }' as it is not an event type: use words of letters, digits, _ and - separated by dots, such as order.created`,
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(values.data);
  } catch (error) {
    throw new UsageError(
      `Cannot use --data as it is not JSON (${
        (error as Error).message
      }): give an object, such as '{"order": 42}'`,
    );
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw new UsageError(
      `Cannot use --data as it is not a JSON object: give one, such as '{"order": 42}'`,
    );
  }
  if (values.deadline !== undefined && Number.isNaN(Date.parse(values.deadline))) {
    throw new UsageError(
      `Cannot use --deadline '${values.deadline}': give an RFC 3339 time, such as 2026-12-06T10:00:00Z`,
    );
  }
  return {
    values,
    type,
    data: data as Record<string, unknown>,
    mode: values.binary ? "binary" : "structured",
  };
}

function optionsOf(flags: EmitFlags) {
  const { id, source, subject, deadline } = flags.values;
  return {
    mode: flags.mode,
    ...(id !== undefined && { id }),
    ...(source !== undefined && { source }),
    ...(subject !== undefined && { subject }),
    ...(deadline !== undefined && { deadline: Date.parse(deadline) }),
  };
}

/** The emit tool for the event type `positionals` names, for the shared runner. */
function emitCommand(positionals: string[]): Command<typeof EMIT_OPTIONS, EmitFlags, EmitFlags> {
  return {
    name: "emit",
    help: HELP,
    options: EMIT_OPTIONS,
    parse: (values) => parseFlags(values, positionals),
    prepare(flags) {
      // Checked before connecting: a bad attribute is a usage error, not a refusal.
      try {
        buildEvent(DISPATCHER_USER, flags.type, flags.data, optionsOf(flags));
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
      return Promise.resolve(flags);
    },
    broker: (flags) => ({
      settings: brokerSettings(flags.values),
      user: DISPATCHER_USER,
      connectionName: "emit",
    }),
    async run(flags, opened, { io, complain }) {
      let id: string;
      try {
        id = await emitEvent(opened.broker, flags.type, flags.data, optionsOf(flags));
      } catch (error) {
        if (!(error instanceof PublishForbiddenError)) throw error;
        complain(error.message);
        return EXIT.failed;
      }
      if (flags.values.json) io.out(JSON.stringify({ id, type: flags.type }));
      else io.out(`Emitted ${flags.type} as ${id} (broker ${opened.label})`);
      return EXIT.passed;
    },
  };
}

/** The event type comes first; the flags follow it. */
function split(args: string[]): [string[], string[]] {
  const first = args[0];
  return first !== undefined && !first.startsWith("-") ? [[first], args.slice(1)] : [[], args];
}

/** Runs the emit tool with `args`; resolves with its exit code. */
export function main(args: string[], io: CliIo): Promise<number> {
  const [positionals, flags] = split(args);
  return runCommand(emitCommand(positionals), flags, io);
}

if (import.meta.main) {
  const [positionals, flags] = split(Deno.args);
  await runMain(emitCommand(positionals), flags);
}
