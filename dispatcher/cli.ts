/**
 * What the command-line tools share: exit codes, where they write, and how
 * they start.
 *
 * @module
 */

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
