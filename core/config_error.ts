/**
 * The error of settings that cannot be used: a configuration file with
 * problems, or broker settings that contradict each other. Every tool exits
 * 2 on it, and its message says what to change.
 *
 * @module
 */

/** One problem in a configuration file. */
export interface ConfigProblem {
  /** 1 for the file's first line. */
  line: number;
  /** 1 for the line's first character. */
  column: number;
  /** Dotted path of the setting, such as `scenarios.basic.tasks[0].task`. */
  path: string;
  /** What is wrong, and what to change. */
  message: string;
}

/** Options for {@linkcode ConfigError}. */
export interface ConfigErrorOptions extends ErrorOptions {
  /** The file, as given, when the settings came from one. */
  file?: string;
  /** What is wrong in the file, where, in file order. */
  problems?: ConfigProblem[];
}

/** Settings that cannot be used; `message` says every problem and its fix. */
export class ConfigError extends Error {
  /** The problems, in file order; empty when the settings did not come from a file. */
  readonly problems: ConfigProblem[];
  /** The file, as given; `undefined` for settings from flags, variables or options. */
  readonly file: string | undefined;

  /**
   * Settings that cannot be used.
   *
   * @param message What cannot be used and how to fix it.
   * @param options The file and its problems, and the cause.
   */
  constructor(message: string, options: ConfigErrorOptions = {}) {
    super(message, options);
    this.name = "ConfigError";
    this.file = options.file;
    this.problems = options.problems ?? [];
  }

  /** The error listing each of `problems` of `file` as `file:line:column: path: message`. */
  static of(file: string, problems: ConfigProblem[]): ConfigError {
    const lines = problems.map((p) =>
      `${file}:${p.line}:${p.column}: ${p.path ? `${p.path}: ` : ""}${p.message}`
    );
    const count = `${problems.length} problem${problems.length === 1 ? "" : "s"}`;
    return new ConfigError(`Cannot use ${file} as it has ${count}:\n${lines.join("\n")}`, {
      file,
      problems,
    });
  }
}
