/**
 * A function's sandbox in a process of its own: `deno run` of
 * `relay.ts` with no permission but reading the function's folder
 * and the runtime (`runtime/`, `core/`), which starts the function's Web
 * Worker with no permissions at all. Deno checks a module specifier written
 * out in the function's code against what that process may read, so a
 * literal `import("../secrets/admin.password", { with: { type: "text" } })`
 * is refused even when this process may read every file (the embedded mode,
 * in `deno task dispatch` and `load`).
 *
 * The messages are the Web Worker's, one JSON text a line over the child's
 * standard input and output. Everything else the child writes (what the
 * function writes to file descriptors 1 and 2 by itself, Deno's own errors)
 * comes out as the function's output, cut to a line's bound. The child has
 * a deadline for loading (the sandbox's), is killed when the sandbox is
 * replaced or closed, and ends by itself when its input closes, as it does
 * when this process dies.
 *
 * @module
 */

import { boundText } from "../../core/contract/message.ts";
import {
  batcher,
  type FromSandbox,
  MAX_RELAYED_CHARS,
  type RelayFailure,
  type RelayStart,
  SandboxError,
  type SandboxHost,
  type ToSandbox,
} from "./host.ts";
import { MAX_OUTPUT_LINE_CHARS } from "./output_budget.ts";
import { readLines } from "./read_lines.ts";

const RELAY = new URL("./relay.ts", import.meta.url);
const RUNTIME_DIR = new URL("../", import.meta.url);
const CORE_DIR = new URL("../../core/", import.meta.url);

/** Longest line of the child kept: its largest message in UTF-8, and some. */
const MAX_LINE_BYTES = MAX_RELAYED_CHARS * 3 + 1024;
/** Lines of the child's standard error kept to say why it ended. */
const LAST_ERRORS = 5;

function pathOf(url: URL): string {
  return decodeURIComponent(url.pathname);
}

/**
 * The arguments of `deno` that start the sandbox process of the function
 * in `module`: reading its folder and the runtime, nothing else.
 */
export function sandboxProcessArgs(module: URL): string[] {
  const reads = [new URL("./", module), RUNTIME_DIR, CORE_DIR].map(pathOf);
  if (reads.some((path) => path.includes(","))) {
    throw new SandboxError(
      `Cannot start the function's sandbox process as a folder it reads has a comma in its name: ${
        reads.join(" ")
      }: move the project to a folder without one`,
    );
  }
  return [
    "run",
    "--quiet",
    "--no-prompt",
    "--unstable-worker-options",
    `--allow-read=${reads.join(",")}`,
    pathOf(RELAY),
  ];
}

/**
 * The command that runs Deno, if this process may run it: this very
 * executable, or `deno` on PATH, which `--allow-run=deno` grants by name
 * only. Asked first, as Deno would otherwise prompt on a terminal.
 */
function denoCommand(): string | undefined {
  return [Deno.execPath(), "deno"].find((command) =>
    Deno.permissions.querySync({ name: "run", command }).state === "granted"
  );
}

/** A sandbox in a process of its own; see the module documentation. */
export class ProcessHost implements SandboxHost {
  readonly send: (message: ToSandbox) => void;
  onMessage: (message: FromSandbox) => void = () => {};
  onFailure: (message: string) => void = () => {};
  readonly #child: Deno.ChildProcess;
  readonly #input: WritableStreamDefaultWriter<Uint8Array>;
  readonly #ended: Promise<void>;
  #terminated = false;

  constructor(module: URL, name: string) {
    if (module.protocol !== "file:") {
      throw new SandboxError(
        `Cannot start the sandbox process of '${name}' as its module is not a file: ${module.href}`,
      );
    }
    const deno = denoCommand();
    if (deno === undefined) {
      throw new SandboxError(
        `Cannot start the sandbox process of '${name}' as this process may not run deno: add --allow-run=deno`,
      );
    }
    try {
      this.#child = new Deno.Command(deno, {
        args: sandboxProcessArgs(module),
        // Deno finds the project's deno.json (which maps the runtime's
        // name) from here up, as for the function's own project.
        cwd: pathOf(new URL("./", module)),
        // Its permissions keep every variable from the function; these keep
        // Deno's own exporter and colours out of its output.
        env: { NO_COLOR: "1", OTEL_DENO: "false", DENO_NO_UPDATE_CHECK: "1" },
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
    } catch (error) {
      if (error instanceof SandboxError) throw error;
      throw new SandboxError(
        `Cannot start the sandbox process of '${name}': ${(error as Error).message}`,
        { cause: error },
      );
    }
    const word = crypto.randomUUID().replaceAll("-", "");
    this.#input = this.#child.stdin.getWriter();
    const encoder = new TextEncoder();
    const write = (value: unknown) =>
      this.#input.write(encoder.encode(JSON.stringify(value) + "\n")).catch(() => {
        // The child is gone: its end is reported below.
      });
    write({ word, module: module.href, name } satisfies RelayStart);
    this.send = batcher<ToSandbox>(write);
    const lastErrors: string[] = [];
    const decoder = new TextDecoder();
    const output = (stream: "stdout" | "stderr") => (line: Uint8Array, bytes: number) => {
      let text = decoder.decode(line);
      if (bytes > line.byteLength) text += ` ... (${bytes - line.byteLength} more bytes)`;
      if (stream === "stderr") {
        lastErrors.push(boundText(text, 512));
        if (lastErrors.length > LAST_ERRORS) lastErrors.shift();
      }
      this.onMessage({ k: "out", stream, text: boundText(text, MAX_OUTPUT_LINE_CHARS) });
    };
    const raw = output("stdout");
    this.#ended = Promise.all([
      this.#child.status,
      readLines(this.#child.stdout, MAX_LINE_BYTES, (line, bytes) => {
        if (bytes > line.byteLength || !startsWith(line, word)) return raw(line, bytes);
        let message: FromSandbox | RelayFailure;
        try {
          message = JSON.parse(decoder.decode(line.subarray(word.length)));
        } catch {
          return raw(line, bytes);
        }
        if (typeof message !== "object" || message === null) return;
        if (message.k === "failure") this.onFailure(String(message.message));
        else this.onMessage(message);
      }),
      readLines(this.#child.stderr, MAX_OUTPUT_LINE_CHARS * 4, output("stderr")),
    ].map((ending) => ending.catch(() => undefined))).then(([status]) => {
      if (this.#terminated) return;
      const how = !status
        ? "an error"
        : status.signal
        ? `signal ${status.signal}`
        : `code ${status.code}`;
      const why = lastErrors.length > 0 ? `: ${lastErrors.join(" / ")}` : "";
      this.onFailure(`its process ended with ${how}${why}`);
    });
  }

  /** Kills the child, and resolves once it and its output have ended. */
  terminate(): Promise<void> {
    if (!this.#terminated) {
      this.#terminated = true;
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // It has ended already.
      }
      this.#input.close().catch(() => {});
    }
    return this.#ended;
  }
}

function startsWith(line: Uint8Array, word: string): boolean {
  if (line.byteLength < word.length) return false;
  for (let i = 0; i < word.length; i++) {
    if (line[i] !== word.charCodeAt(i)) return false;
  }
  return true;
}
