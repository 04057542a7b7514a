/**
 * What the command-line tools share: exit codes, where they write, and how
 * they start.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { shouldColor } from "./report.ts";

/** Exit codes of every command-line tool. */
export const EXIT = { passed: 0, failed: 1, usage: 2, unavailable: 3 } as const;

/** Where a tool writes and what it reads from its environment. */
export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
  env: (name: string) => string | undefined;
  color: boolean;
}

/** Runs a tool's `main` with the process's arguments and streams, then exits with its code. */
export async function runCli(main: (args: string[], io: CliIo) => Promise<number>): Promise<never> {
  const code = await main(Deno.args, {
    out: (line) => console.log(line),
    err: (line) => console.error(line),
    env: (name) => Deno.env.get(name),
    color: shouldColor(Deno.stdout.isTerminal(), Deno.env.get("NO_COLOR")),
  });
  Deno.exit(code);
}

/** A bad option or argument: the tool exits with {@linkcode EXIT.usage}. */
export class UsageError extends Error {
  /** @param message What was wrong and what to give instead. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Parses a tool's flags strictly; an unknown or malformed one is a {@linkcode UsageError}. */
export function readOptions<const O extends NonNullable<ParseArgsConfig["options"]>>(
  args: string[],
  options: O,
  tool: string,
) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError(
      `Cannot read the options: ${(error as Error).message}. See 'deno task ${tool} --help'`,
    );
  }
}

/** Reads a flag's whole number, at least `min`; `fallback` when the flag is absent. */
export function wholeNumber(
  text: string | undefined,
  flag: string,
  fallback: number,
  min = 1,
): number {
  if (text === undefined) return fallback;
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min) {
    throw new UsageError(`Cannot use ${flag} '${text}': give a whole number >= ${min}`);
  }
  return value;
}
