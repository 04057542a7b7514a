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

function plain(value: unknown): unknown {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  return value;
}

// Every line has these; a field of the same name cannot replace them.
const RESERVED = new Set(["ts", "level", "msg"]);

// A worker writes the same few field names on every line: each is quoted once.
const quotedKeys = new Map<string, string>();
function quoted(key: string): string {
  let text = quotedKeys.get(key);
  if (text === undefined) {
    text = JSON.stringify(key);
    if (quotedKeys.size < 1024) quotedKeys.set(key, text);
  }
  return text;
}

/** The value as JSON, with the common cases made without a general serialisation. */
function jsonValue(value: unknown): string | undefined {
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  return JSON.stringify(plain(value));
}

/** `,"key":value` for each defined field not in `skip`, as JSON. */
function jsonMembers(fields: LogFields, skip: Set<string>): string {
  let members = "";
  for (const key in fields) {
    const value = fields[key];
    if (value === undefined || skip.has(key) || RESERVED.has(key)) continue;
    const json = jsonValue(value);
    // As in JSON.stringify of an object, a value JSON cannot hold is left out.
    if (json !== undefined) members += `,${quoted(key)}:${json}`;
  }
  return members;
}

let lastMs = NaN;
let lastIso = "";

/**
 * `Date.now()` as ISO 8601, made once per millisecond: a busy worker writes
 * several lines (and replies) within one.
 */
export function isoNow(ms = Date.now()): string {
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

// Line breaks, terminal escapes and the other control characters: matching
// them is the point.
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
const SHORT_ESCAPES: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/**
 * `text` with every control character written as an escape (`\n`,
 * `\u001b`): a text line stays one line, and no value in it (a function's
 * output, a task id) can start a line of its own or drive the terminal.
 */
export function escapeControl(text: string): string {
  return text.replace(
    CONTROL,
    (char) => SHORT_ESCAPES[char] ?? `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

function toText(level: LogLevel, msg: string, fields: LogFields): string {
  const pairs = Object.entries(fields)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) =>
      `${escapeControl(key)}=${
        escapeControl(typeof value === "string" ? value : JSON.stringify(value) ?? String(value))
      }`
    );
  return [new Date().toISOString(), level.toUpperCase().padEnd(5), escapeControl(msg), ...pairs]
    .join(" ");
}

/** Creates a {@linkcode Logger}. */
export function createLogger(options: CreateLoggerOptions = {}): Logger {
  const threshold = LOG_LEVELS.indexOf(options.level ?? "info");
  const format = options.format ?? "json";
  const write = options.write ?? ((line: string) => console.log(line));
  const make = (base: LogFields): Logger => {
    // A worker writes a line per task: the fields every line shares are
    // turned into JSON once, not on each line.
    const shared = jsonMembers(base, new Set());
    const emit = (level: LogLevel, msg: string, fields?: LogFields) => {
      if (LOG_LEVELS.indexOf(level) < threshold) return;
      if (format === "text") {
        const all: LogFields = {};
        for (const [key, value] of Object.entries({ ...base, ...fields })) {
          if (value !== undefined && !RESERVED.has(key)) all[key] = plain(value);
        }
        write(toText(level, msg, all));
        return;
      }
      let members = shared;
      if (fields) {
        // A field of the line replaces a shared one of the same name.
        let clash = false;
        for (const key in fields) {
          if (key in base) {
            clash = true;
            break;
          }
        }
        members = clash
          ? jsonMembers({ ...base, ...fields }, RESERVED)
          : shared + jsonMembers(fields, RESERVED);
      }
      write(`{"ts":"${isoNow()}","level":"${level}","msg":${JSON.stringify(msg)}${members}}`);
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

/** A sink for log lines that writes them in batches. */
export interface BufferedWriter {
  /** Queues one line (without its newline). */
  write(line: string): void;
  /** Writes every queued line now. */
  flush(): void;
}

/** Options for {@linkcode createBufferedWriter}. */
export interface BufferedWriterOptions {
  /**
   * Longest a line waits before it is written, in milliseconds.
   * @default {20}
   */
  flushMs?: number;
  /**
   * Queued bytes that trigger a write at once.
   * @default {65536}
   */
  maxBytes?: number;
}

/**
 * Batches lines into few writes: a write per line costs a system call each,
 * about ten times the cost of the line itself at thousands of lines per
 * second. A line after a quiet spell is written at once and opens a window
 * of `flushMs` in which further lines are gathered, so single lines show up
 * at once and bursts cost a write per window. Call `flush()` before exiting.
 */
export function createBufferedWriter(
  output: { writeSync(bytes: Uint8Array): number },
  options: BufferedWriterOptions = {},
): BufferedWriter {
  const flushMs = options.flushMs ?? 20;
  const maxBytes = options.maxBytes ?? 65_536;
  const encoder = new TextEncoder();
  let lines: string[] = [];
  let size = 0;
  let window: ReturnType<typeof setTimeout> | undefined;
  const writeAll = (text: string) => {
    let bytes = encoder.encode(text);
    while (bytes.byteLength > 0) bytes = bytes.subarray(output.writeSync(bytes));
  };
  const flush = () => {
    if (lines.length === 0) return;
    const text = lines.join("\n") + "\n";
    lines = [];
    size = 0;
    writeAll(text);
  };
  const endWindow = () => {
    const busy = lines.length > 0;
    flush();
    window = busy ? setTimeout(endWindow, flushMs) : undefined;
  };
  return {
    write(line) {
      if (window === undefined) {
        writeAll(line + "\n");
        window = setTimeout(endWindow, flushMs);
        return;
      }
      lines.push(line);
      size += line.length + 1;
      if (size >= maxBytes) flush();
    },
    flush,
  };
}
