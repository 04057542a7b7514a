/**
 * Structured logging: one JSON object per line for machines, or a short
 * human line, with a level filter. Fields given to {@linkcode Logger.child}
 * appear on every line, so a worker's lines all name its function and queue.
 *
 * @module
 */

/** Severity, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** `json`: one object per line (ts, level, msg, fields); `text`: for people. */
export type LogFormat = "json" | "text";

/** Extra data for a log line; `undefined` values are left out. */
export type LogFields = Record<string, unknown>;

/** Writes log lines at or above its level. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

/** Every level, lowest first. */
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/** Options for {@linkcode createLogger}. */
export interface CreateLoggerOptions {
  /** @default {"info"} */
  level?: LogLevel;
  /** @default {"json"} */
  format?: LogFormat;
  /** Fields on every line. */
  fields?: LogFields;
  /**
   * Receives each finished line, without its newline.
   * @default {console.log}
   */
  write?: (line: string) => void;
}

function errorFields(value: unknown): unknown {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  return value;
}

function toText(level: LogLevel, msg: string, fields: LogFields): string {
  const pairs = Object.entries(fields)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`);
  return [new Date().toISOString(), level.toUpperCase().padEnd(5), msg, ...pairs].join(" ");
}

/** Creates a {@linkcode Logger}. */
export function createLogger(options: CreateLoggerOptions = {}): Logger {
  const threshold = LOG_LEVELS.indexOf(options.level ?? "info");
  const format = options.format ?? "json";
  const write = options.write ?? ((line: string) => console.log(line));
  const make = (base: LogFields): Logger => {
    const emit = (level: LogLevel, msg: string, fields?: LogFields) => {
      if (LOG_LEVELS.indexOf(level) < threshold) return;
      const all: LogFields = { ...base, ...fields };
      if ("error" in all) all.error = errorFields(all.error);
      if (format === "text") {
        write(toText(level, msg, all));
        return;
      }
      const line: LogFields = { ts: new Date().toISOString(), level, msg };
      for (const [key, value] of Object.entries(all)) {
        if (value !== undefined) line[key] = value;
      }
      write(JSON.stringify(line));
    };
    return {
      debug: (msg, fields) => emit("debug", msg, fields),
      info: (msg, fields) => emit("info", msg, fields),
      warn: (msg, fields) => emit("warn", msg, fields),
      error: (msg, fields) => emit("error", msg, fields),
      child: (fields) => make({ ...base, ...fields }),
    };
  };
  return make(options.fields ?? {});
}

/** A logger that writes nothing, for tests and quiet embedded workers. */
export const SILENT_LOGGER: Logger = createLogger({ level: "error", write: () => {} });
