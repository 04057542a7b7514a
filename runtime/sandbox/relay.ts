/**
 * The main module of a sandbox's own process (`process_host.ts`): it
 * starts the function's Web Worker, with no permissions, in a process that
 * may read only the function's folder and the runtime, and relays the
 * sandbox's messages over its standard input and output, one JSON text a
 * line.
 *
 * Its first line of input says which function to load and the word that
 * starts each line it sends back. The function cannot learn that word: it
 * never reads this thread's memory, and the line was read before it loaded.
 * So whatever the function writes to this process's output by itself
 * (`node:fs` on file descriptor 1 reaches it) is never taken for a message.
 * The process ends when its input does: when its parent closes it, or dies.
 *
 * @module
 */

import {
  batcher,
  type FromSandbox,
  MAX_RELAYED_CHARS,
  type RelayFailure,
  type RelayStart,
  type ToSandbox,
} from "./host.ts";
import { readLines } from "./read_lines.ts";
import { ThreadHost } from "./thread_host.ts";

/** Longest line the parent sends: a batch of tasks, each at most a request's size. */
const MAX_INPUT_BYTES = 256 * 1024 * 1024;

const encoder = new TextEncoder();

function writeAll(bytes: Uint8Array): void {
  while (bytes.byteLength > 0) bytes = bytes.subarray(Deno.stdout.writeSync(bytes));
}

function lineOf(message: FromSandbox | RelayFailure): string | undefined {
  let text: string;
  try {
    text = JSON.stringify(message);
  } catch {
    return undefined;
  }
  if (text.length <= MAX_RELAYED_CHARS) return text;
  if (message.k !== "done") return undefined;
  return JSON.stringify({
    k: "done",
    id: message.id,
    outcome: {
      ok: false,
      retryable: false,
      error: {
        type: "ResultTooLarge",
        message:
          `Cannot send the handler's result as it takes more than ${MAX_RELAYED_CHARS} characters: return less, or store it elsewhere and return where`,
      },
    },
  });
}

/** Relays between standard input and output and the function's Web Worker until input ends. */
export async function relay(): Promise<void> {
  let host: ThreadHost | undefined;
  let write: ((message: FromSandbox | RelayFailure) => void) | undefined;
  const decoder = new TextDecoder();
  await readLines(Deno.stdin.readable, MAX_INPUT_BYTES, (line) => {
    const parsed = JSON.parse(decoder.decode(line));
    if (host === undefined) {
      const start = parsed as RelayStart;
      write = batcher<FromSandbox | RelayFailure>((batch) => {
        let text = "";
        for (const message of batch) {
          const json = lineOf(message);
          if (json !== undefined) text += `${start.word}${json}\n`;
        }
        if (text) writeAll(encoder.encode(text));
      });
      host = new ThreadHost(new URL(start.module), start.name);
      host.onMessage = write;
      host.onFailure = (message) => write!({ k: "failure", message });
      return;
    }
    for (const message of parsed as ToSandbox[]) host.send(message);
  });
  host?.terminate();
}

if (import.meta.main) {
  try {
    await relay();
  } finally {
    // The Web Worker may hold timers of its own: the process ends with its input.
    Deno.exit(0);
  }
}
