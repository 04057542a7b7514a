/**
 * Checking a YAML document against a schema written as code, reporting
 * every problem at once with the line and column where it is. Knows nothing
 * of test-config.yml: `load_config.ts` holds that schema.
 *
 * @module
 */

import { isMap, LineCounter, parseDocument } from "yaml";
import { ConfigError, type ConfigProblem } from "../../core/config_error.ts";

/** Where a value is in the document: keys and list indexes from the root. */
export type YamlPath = (string | number)[];

type Node = { range?: [number, number, number] | null };

/** `scenarios.basic.tasks[0].task` */
function formatPath(path: YamlPath): string {
  return path.map((part, i) => typeof part === "number" ? `[${part}]` : i === 0 ? part : `.${part}`)
    .join("");
}

/** Whether `value` is a mapping (not null, not a list). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A value as a message names it: `'text'`, `a list`, `missing`. */
export function show(value: unknown): string {
  if (value === undefined) return "missing";
  if (value === null) return "empty";
  if (typeof value === "string") return `'${value}'`;
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  return String(value);
}

/** Collects the problems of one document, each placed at its line and column. */
export class YamlChecker {
  readonly problems: ConfigProblem[] = [];
  readonly #doc: ReturnType<typeof parseDocument>;
  readonly #lines: LineCounter;

  private constructor(doc: ReturnType<typeof parseDocument>, lines: LineCounter) {
    this.#doc = doc;
    this.#lines = lines;
  }

  /**
   * Parses `text` and returns its plain value with a checker for it; throws
   * a {@linkcode ConfigError} for YAML that does not parse (or repeats a key).
   */
  static parse(text: string, file: string): { root: unknown; check: YamlChecker } {
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
    const check = new YamlChecker(doc, lines);
    if (doc.errors.length > 0) {
      for (const error of doc.errors) {
        const { line, col } = lines.linePos(error.pos[0]);
        const detail = error.code === "DUPLICATE_KEY"
          ? "a key appears twice in one mapping: remove or rename one"
          : `${error.message}: fix the YAML syntax`;
        check.problems.push({ line, column: col, path: "", message: detail });
      }
      throw ConfigError.of(file, check.problems);
    }
    return { root: doc.toJS({ maxAliasCount: 100 }), check };
  }

  /** Throws a {@linkcode ConfigError} of `file` listing every problem, if there is any. */
  throwIfAny(file: string): void {
    if (this.problems.length === 0) return;
    this.problems.sort((a, b) => a.line - b.line || a.column - b.column);
    throw ConfigError.of(file, this.problems);
  }

  /** Records a problem at the deepest part of `path` that exists in the file. */
  report(path: YamlPath, message: string, atKey = false): void {
    let offset = 0;
    for (let depth = path.length; depth >= 0; depth--) {
      const node = this.#locate(path.slice(0, depth), atKey && depth === path.length);
      if (node?.range) {
        offset = node.range[0];
        break;
      }
    }
    const { line, col } = this.#lines.linePos(offset);
    this.problems.push({ line, column: col, path: formatPath(path), message });
  }

  #locate(path: YamlPath, key: boolean): Node | undefined {
    if (path.length === 0) return this.#doc.contents as Node | undefined;
    if (key) {
      const parent = this.#doc.getIn(path.slice(0, -1), true);
      if (isMap(parent)) {
        const pair = parent.items.find((item) =>
          (item.key as { value?: unknown })?.value === path.at(-1)
        );
        return pair?.key as Node | undefined;
      }
    }
    return this.#doc.getIn(path, true) as Node | undefined;
  }

  /** Whether `value` is a mapping; reports it if not, and each key not in `allowed`. */
  mapping(value: unknown, path: YamlPath, allowed: string[]): value is Record<string, unknown> {
    if (!isObject(value)) {
      this.report(path, `must be a mapping, but is ${show(value)}`);
      return false;
    }
    for (const key of Object.keys(value)) {
      if (!allowed.includes(key)) {
        this.report([...path, key], `is not a setting here: use ${allowed.join(", ")}`, true);
      }
    }
    return true;
  }

  /** Whether `value` is a string matching `pattern`; reports `what` and `rule` if not. */
  matches(
    value: unknown,
    path: YamlPath,
    pattern: RegExp,
    { what, rule, atKey = false }: { what: string; rule: string; atKey?: boolean },
  ): value is string {
    if (typeof value === "string" && pattern.test(value)) return true;
    this.report(path, `${what} ${show(value)} ${rule}`, atKey);
    return false;
  }

  /** A number of at least `min` (whole when `integer`), or `undefined` (reported unless absent). */
  number(
    value: unknown,
    path: YamlPath,
    { min, max = Infinity, integer }: { min: number; max?: number; integer: boolean },
  ): number | undefined {
    if (value === undefined) return undefined;
    if (
      typeof value !== "number" || !Number.isFinite(value) || value < min || value > max ||
      (integer && !Number.isInteger(value))
    ) {
      const range = max === Infinity ? `>= ${min}` : `from ${min} to ${max}`;
      this.report(
        path,
        `must be a ${integer ? "whole " : ""}number ${range}, but is ${show(value)}`,
      );
      return undefined;
    }
    return value;
  }

  /** A string, or `undefined` (reported unless absent). */
  string(value: unknown, path: YamlPath): string | undefined {
    if (value === undefined) return undefined;
    if (typeof value !== "string") {
      this.report(path, `must be a string, but is ${show(value)}`);
      return undefined;
    }
    return value;
  }
}
