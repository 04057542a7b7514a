/**
 * Inside a function's sandbox, before the function's code runs: its
 * `console` (every method, `node:console` too, which is the same object),
 * `Deno.stdout` and `Deno.stderr` no longer write to the process's output.
 * Each line they would write goes to `emit` instead, which hands it to the
 * runtime's log; `Deno.stdin` reads nothing.
 *
 * What this cannot take over, as it is not reachable from JavaScript: Node's
 * file descriptors 1 and 2 (`node:fs` `writeSync(1, ...)`, `process.stdout`)
 * and Deno's internals. A sandbox in a process of its own
 * (`process_host.ts`) has those captured too, by its parent.
 *
 * @module
 */

import type { OutputStream } from "./host.ts";
import { MAX_OUTPUT_LINE_CHARS } from "./output_budget.ts";

/** Receives one line of the function's output. */
export type Emit = (stream: OutputStream, text: string) => void;

/** The captured output. */
export interface CapturedOutput {
  /** Emits what `Deno.stdout`/`Deno.stderr` hold of an unfinished line. */
  flush(): void;
}

function inspect(value: unknown): string {
  try {
    return Deno.inspect(value, { colors: false });
  } catch {
    return "[a value that cannot be shown]";
  }
}

const text = (value: unknown) => typeof value === "string" ? value : inspect(value);

/** `console.log`'s arguments as one text, with its `%s`, `%d`, `%o` substitutions. */
export function formatArgs(args: unknown[]): string {
  if (args.length === 0) return "";
  const [first, ...rest] = args;
  if (typeof first !== "string" || rest.length === 0 || !first.includes("%")) {
    return args.map(text).join(" ");
  }
  let used = 0;
  const head = first.replace(/%[sdifoOjc%]/g, (spec) => {
    if (spec === "%%") return "%";
    if (used >= rest.length) return spec;
    const value = rest[used++];
    switch (spec) {
      case "%s":
        return text(value);
      case "%d":
      case "%i":
        return typeof value === "bigint" ? `${value}n` : String(Math.trunc(Number(value)));
      case "%f":
        return String(Number(value));
      case "%c":
        return "";
      default:
        return inspect(value);
    }
  });
  return [head, ...rest.slice(used).map(text)].join(" ");
}

/** A console whose every method writes through `emit`. */
function consoleMethods(emit: Emit): Record<string, (...args: unknown[]) => unknown> {
  const counts = new Map<string, number>();
  const timers = new Map<string, number>();
  let indent = "";
  const print = (stream: OutputStream) => (...args: unknown[]) =>
    emit(stream, indent + formatArgs(args));
  const elapsed = (label: string, end: boolean, extra: unknown[]) => {
    const started = timers.get(label);
    if (started === undefined) return emit("stderr", `${indent}Timer '${label}' does not exist`);
    if (end) timers.delete(label);
    const ms = (performance.now() - started).toFixed(0);
    emit("stdout", `${indent}${label}: ${ms}ms${extra.length ? " " + formatArgs(extra) : ""}`);
  };
  const group = (...args: unknown[]) => {
    if (args.length > 0) print("stdout")(...args);
    indent += "  ";
  };
  const nothing = () => {};
  return {
    log: print("stdout"),
    info: print("stdout"),
    debug: print("stdout"),
    dirxml: print("stdout"),
    dir: (value) => emit("stdout", indent + inspect(value)),
    table: (data) => emit("stdout", indent + inspect(data)),
    error: print("stderr"),
    warn: print("stderr"),
    trace: (...args) => {
      const stack = (new Error().stack ?? "").split("\n").slice(2).join("\n");
      emit("stderr", `${indent}Trace${args.length ? ": " + formatArgs(args) : ""}\n${stack}`);
    },
    assert: (condition, ...args) => {
      if (condition) return;
      emit("stderr", `${indent}Assertion failed${args.length ? ": " + formatArgs(args) : ""}`);
    },
    count: (label = "default") => {
      const count = (counts.get(String(label)) ?? 0) + 1;
      counts.set(String(label), count);
      emit("stdout", `${indent}${label}: ${count}`);
    },
    countReset: (label = "default") => void counts.delete(String(label)),
    time: (label = "default") => void timers.set(String(label), performance.now()),
    timeLog: (label = "default", ...extra) => elapsed(String(label), false, extra),
    timeEnd: (label = "default") => elapsed(String(label), true, []),
    group,
    groupCollapsed: group,
    groupEnd: () => void (indent = indent.slice(2)),
    clear: nothing,
    profile: nothing,
    profileEnd: nothing,
    timeStamp: nothing,
  };
}

/** `Deno.stdout` or `Deno.stderr`, writing whole lines through `emit`. */
function lineWriter(stream: OutputStream, emit: Emit) {
  const decoder = new TextDecoder();
  let partial = "";
  const take = (bytes: Uint8Array): number => {
    const lines = (partial + decoder.decode(bytes, { stream: true })).split("\n");
    partial = lines.pop()!;
    // An unfinished line is not held without bound.
    if (partial.length > MAX_OUTPUT_LINE_CHARS) {
      lines.push(partial);
      partial = "";
    }
    for (const line of lines) emit(stream, line);
    return bytes.byteLength;
  };
  return {
    writeSync: take,
    write: (bytes: Uint8Array) => Promise.resolve(take(bytes)),
    writable: new WritableStream<Uint8Array>({ write: (chunk) => void take(chunk) }),
    close() {},
    isTerminal: () => false,
    flush() {
      if (partial === "") return;
      const line = partial;
      partial = "";
      emit(stream, line);
    },
  };
}

const noInput = {
  read: () => Promise.resolve(null),
  readSync: () => null,
  readable: new ReadableStream<Uint8Array>({ start: (controller) => controller.close() }),
  close() {},
  isTerminal: () => false,
  setRaw() {},
};

function lock(target: object, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, writable: false, configurable: false });
}

/** Takes the output over; see the module documentation. Call once, first. */
export function captureOutput(emit: Emit): CapturedOutput {
  // The console object itself is changed, not replaced: node:console
  // exports this same object, and the originals must not stay reachable.
  const methods = consoleMethods(emit);
  const original = globalThis.console as unknown as Record<string, unknown>;
  // V8's own: a task runs its function; a context is one more console.
  methods.createTask = () => ({ run: (fn: () => unknown) => fn() });
  methods.context = () => original;
  for (const key of Object.keys(original)) {
    if (typeof original[key] === "function" && !(key in methods)) {
      methods[key] = (...args) => emit("stdout", formatArgs(args));
    }
  }
  for (const [key, method] of Object.entries(methods)) lock(original, key, method);
  const stdout = lineWriter("stdout", emit);
  const stderr = lineWriter("stderr", emit);
  lock(Deno, "stdout", stdout);
  lock(Deno, "stderr", stderr);
  lock(Deno, "stdin", noInput);
  return {
    flush() {
      stdout.flush();
      stderr.flush();
    },
  };
}
