/**
 * The command-line kit every tool is built on, as one face: the runner and
 * its exit codes (`run_cli.ts`), the options and their checks
 * (`options.ts`), output files (`output_files.ts`), colours (`paint.ts`) and
 * text that came from outside made safe for a terminal (`terminal_text.ts`).
 *
 * @module
 */

export * from "./run_cli.ts";
export * from "./options.ts";
export * from "./output_files.ts";
export * from "./paint.ts";
export * from "./terminal_text.ts";
