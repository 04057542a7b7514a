/**
 * The one runner of every command-line tool (`deno task dispatch`, `load`,
 * `status`, `dlq`, `bench`): it parses the flags, prints `--help`, lets the
 * tool prepare (configuration, output paths), opens the broker, runs the
 * tool, and closes the broker whatever happens. Exit codes come from the
 * type of an error, never from its message:
 *
 * - 2: `UsageError`, `ConfigError`, `SecretFileError`, `OutputPathError`
 *   (something the user can fix in the command, a file or a setting);
 * - 3: `BrokerUnavailableError`, `WorkersMissingError`;
 * - 70: anything else, which is a bug: printed with its stack.
 *
 * @module
 */

import {
  BrokerUnavailableError,
  describeConnectionEvent,
  SecretFileError,
} from "../../core/broker/mod.ts";
import { ConfigError } from "../../core/config_error.ts";
import {
  connectBroker,
  type OpenBrokerOptions,
  type OpenedBroker,
  resolveTarget,
} from "../../client/open_broker.ts";
import { WorkersMissingError } from "../../client/workers.ts";
import {
  BROKER_FLAG_NAMES,
  type OptionsConfig,
  type OptionValues,
  readOptions,
  UsageError,
} from "./options.ts";
import { OutputPathError } from "./output_files.ts";
import { createPainter, shouldColor } from "./paint.ts";

/** Exit codes of every command-line tool. */
export const EXIT = { passed: 0, failed: 1, usage: 2, unavailable: 3, bug: 70 } as const;

/** The help lines every tool ends its exit codes with. */
export const EXIT_HELP_BUG = "70 a bug: an unexpected error, printed with its stack to report";

/** The help line of exit code 2 of a tool that reads test-config.yml and a password file. */
export const EXIT_HELP_USAGE = "2  bad option, configuration or credentials file";

/** The help line of exit code 3 of a tool that needs the broker only. */
export const EXIT_HELP_UNAVAILABLE = "3  broker unavailable";

/** Where a tool writes and what it reads from its environment. */
export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
  env: (name: string) => string | undefined;
  /** Whether to colour what goes to stdout and to stderr. */
  color: { out: boolean; err: boolean };
  /** Whether stdout is a terminal, for progress lines that rewrite themselves. */
  isTerminal?: boolean;
  /** Opens one broker connection; for tests. @default {the adapter of the URL's scheme} */
  connect?: OpenBrokerOptions["connect"];
}

/** Tells the user of a problem: a red line on stderr, or a JSON log line. */
export type Complain = (message: string, level?: "warn" | "error") => void;

/** What a tool gets from the runner while it runs. */
export interface Session {
  readonly io: CliIo;
  /** Tells the user of a problem, in the tool's format. */
  readonly complain: Complain;
}

/** A command-line tool, as the runner drives it; `F` its flags, `P` its plan. */
export interface Command<O extends OptionsConfig, F, P> {
  /** Its name after `deno task`, for messages. */
  name: string;
  /** Its `--help`: every flag, the exit codes (70 included), examples. */
  help: string;
  /** Its options; `help` among them. */
  options: O;
  /** Checks the parsed flags; throws a `UsageError`. */
  parse(values: OptionValues<O>): F;
  /** How problems are told once the flags are known; `undefined`: red lines on stderr. */
  complainer?(flags: F, io: CliIo): Complain | undefined;
  /**
   * Everything before the broker: configuration, output paths, early exits
   * (`--list`). Resolves with the plan, or with an exit code to stop at.
   */
  prepare(flags: F, session: Session): Promise<P | number>;
  /** How to open the broker for the plan (the runner adds `env` and `connect`). */
  broker(plan: P): OpenBrokerOptions;
  /** Told when the broker is unavailable, before the runner prints why and exits 3. */
  unavailable?(
    plan: P,
    label: string | undefined,
    error: BrokerUnavailableError,
    session: Session,
  ): void;
  /** Runs the tool on the open broker; resolves with the exit code. */
  run(plan: P, opened: OpenedBroker, session: Session): Promise<number>;
}

/** The exit code of an error, by its type; `undefined` for an error no type explains: a bug. */
export function exitCodeOf(error: unknown): number | undefined {
  if (
    error instanceof UsageError || error instanceof ConfigError ||
    error instanceof SecretFileError || error instanceof OutputPathError
  ) return EXIT.usage;
  if (error instanceof BrokerUnavailableError || error instanceof WorkersMissingError) {
    return EXIT.unavailable;
  }
  return undefined;
}

function plainComplainer(io: CliIo): Complain {
  const paint = createPainter(io.color.err);
  return (message, level = "error") =>
    io.err(level === "error" ? paint.bad(message) : paint.warn(message));
}

/** Runs `command` with `args`; resolves with its exit code. */
export async function runCommand<O extends OptionsConfig, F, P>(
  command: Command<O, F, P>,
  args: string[],
  io: CliIo,
): Promise<number> {
  let complain = plainComplainer(io);
  const session: Session = { io, complain: (message, level) => complain(message, level) };
  let opened: OpenedBroker | undefined;
  try {
    const values = readOptions(args, command.options, command.name);
    if ((values as { help?: boolean }).help) {
      io.out(command.help);
      return EXIT.passed;
    }
    const flags = command.parse(values);
    complain = command.complainer?.(flags, io) ?? complain;
    const plan = await command.prepare(flags, session);
    if (typeof plan === "number") return plan;
    const options: OpenBrokerOptions = {
      env: io.env,
      names: BROKER_FLAG_NAMES,
      connect: io.connect,
      onConnectionEvent: (event) => complain(describeConnectionEvent(event), "warn"),
      ...command.broker(plan),
    };
    const target = await resolveTarget(options);
    try {
      opened = await connectBroker(target, options);
    } catch (error) {
      if (error instanceof BrokerUnavailableError) {
        command.unavailable?.(plan, target?.label, error, session);
      }
      throw error;
    }
    if (opened.notice) complain(opened.notice, "warn");
    return await command.run(plan, opened, session);
  } catch (error) {
    const code = exitCodeOf(error);
    if (code !== undefined) {
      complain((error as Error).message);
      return code;
    }
    complain(
      `Bug: deno task ${command.name} stopped on an unexpected error (exit ${EXIT.bug}). Please report it with what follows:\n${
        error instanceof Error ? error.stack ?? error.message : String(error)
      }`,
    );
    return EXIT.bug;
  } finally {
    // A connection lost during the run cannot be closed cleanly; that must
    // not hide the run's own exit code.
    await opened?.close().catch(() => {});
  }
}

/** Runs `command` with the process's arguments (or `args`) and streams, then exits with its code. */
export async function runMain<O extends OptionsConfig, F, P>(
  command: Command<O, F, P>,
  args: string[] = Deno.args,
): Promise<never> {
  const noColor = Deno.env.get("NO_COLOR");
  const code = await runCommand(command, args, {
    out: (line) => console.log(line),
    err: (line) => console.error(line),
    env: (name) => Deno.env.get(name),
    color: {
      out: shouldColor(Deno.stdout.isTerminal(), noColor),
      err: shouldColor(Deno.stderr.isTerminal(), noColor),
    },
    isTerminal: Deno.stdout.isTerminal(),
  });
  Deno.exit(code);
}
