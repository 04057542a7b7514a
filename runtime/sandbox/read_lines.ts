/**
 * Splits a byte stream into lines, each held to a bound: the pipes between
 * the runtime and a sandbox's own process (`process_host.ts`), where the
 * far end may write anything.
 *
 * @module
 */

/** A line, without its newline: its first `maxBytes` bytes, and how long it really was. */
export type OnLine = (line: Uint8Array, bytes: number) => void;

/**
 * Reads `stream` to its end, calling `onLine` for each line; of a line
 * longer than `maxBytes`, only the first `maxBytes` bytes are kept. A last
 * line without a newline counts too.
 */
export async function readLines(
  stream: ReadableStream<Uint8Array>,
  maxBytes: number,
  onLine: OnLine,
): Promise<void> {
  let parts: Uint8Array[] = [];
  let kept = 0;
  let total = 0;
  const add = (bytes: Uint8Array) => {
    total += bytes.byteLength;
    const room = maxBytes - kept;
    if (room <= 0 || bytes.byteLength === 0) return;
    const part = bytes.byteLength > room ? bytes.subarray(0, room) : bytes;
    // The stream may reuse its chunk: what is kept is copied.
    parts.push(part.slice());
    kept += part.byteLength;
  };
  const emit = () => {
    const line = parts.length === 1 ? parts[0] : new Uint8Array(kept);
    if (parts.length !== 1) {
      let at = 0;
      for (const part of parts) {
        line.set(part, at);
        at += part.byteLength;
      }
    }
    const bytes = total;
    parts = [];
    kept = 0;
    total = 0;
    onLine(line, bytes);
  };
  for await (const chunk of stream) {
    let start = 0;
    while (start < chunk.byteLength) {
      const newline = chunk.indexOf(10, start);
      if (newline === -1) {
        add(chunk.subarray(start));
        break;
      }
      add(chunk.subarray(start, newline));
      emit();
      start = newline + 1;
    }
  }
  if (total > 0) emit();
}
