/**
 * Colours for terminal output: only on a terminal, and never with `NO_COLOR`.
 *
 * @module
 */

import { styleText } from "node:util";

/** Colours output, or leaves it plain. */
export interface Painter {
  ok(text: string): string;
  bad(text: string): string;
  warn(text: string): string;
  info(text: string): string;
  dim(text: string): string;
  bold(text: string): string;
}

/** Whether to colour: only on a terminal, and never when `NO_COLOR` is set. */
export function shouldColor(isTerminal: boolean, noColor: string | undefined): boolean {
  return isTerminal && (noColor === undefined || noColor === "");
}

/** A {@linkcode Painter} that colours when `color` is true. */
export function createPainter(color: boolean): Painter {
  const paint = (format: Parameters<typeof styleText>[0]) => (text: string) =>
    color ? styleText(format, text, { validateStream: false }) : text;
  return {
    ok: paint("green"),
    bad: paint("red"),
    warn: paint("yellow"),
    info: paint("cyan"),
    dim: paint("gray"),
    bold: paint("bold"),
  };
}
