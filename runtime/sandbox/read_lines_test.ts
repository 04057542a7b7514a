import assert from "node:assert/strict";
import { readLines } from "./read_lines.ts";

const encoder = new TextEncoder();

function streamOf(...chunks: string[]): ReadableStream<Uint8Array> {
  return ReadableStream.from(chunks.map((chunk) => encoder.encode(chunk)));
}

async function lines(stream: ReadableStream<Uint8Array>, maxBytes: number) {
  const seen: [string, number][] = [];
  await readLines(stream, maxBytes, (line, bytes) => {
    seen.push([new TextDecoder().decode(line), bytes]);
  });
  return seen;
}

Deno.test("readLines() splits lines across chunks, and counts a last line without a newline", async () => {
  assert.deepEqual(await lines(streamOf("ab", "c\nd", "e\n\nf"), 100), [
    ["abc", 3],
    ["de", 2],
    ["", 0],
    ["f", 1],
  ]);
});

Deno.test("readLines() keeps only maxBytes of a long line, and says how long it was", async () => {
  assert.deepEqual(await lines(streamOf("0123", "456789\nok\n"), 5), [
    ["01234", 10],
    ["ok", 2],
  ]);
});
