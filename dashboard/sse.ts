/**
 * Server-sent events: every open page holds one `text/event-stream`
 * response, and each message goes to all of them. A page that stops
 * reading (its socket buffer full) is dropped rather than let the server's
 * memory grow; its browser reconnects by itself. A comment line every 15 s
 * keeps proxies from closing an idle stream.
 *
 * @module
 */

/** Bytes a page may have unread before it is dropped. */
const MAX_BACKLOG_BYTES = 4 * 1024 * 1024;
const KEEPALIVE_MS = 15_000;
const encoder = new TextEncoder();

/** One message: `event: <name>` and its data as one JSON line. */
export function sseMessage(event: string, data: unknown): Uint8Array {
  // JSON.stringify never leaves a raw newline, so the data is one `data:` line.
  return encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

/** The open streams. */
export class SseHub {
  readonly #streams = new Set<ReadableStreamDefaultController<Uint8Array>>();
  readonly #keepalive: ReturnType<typeof setInterval>;

  constructor() {
    this.#keepalive = setInterval(
      () => this.#write(encoder.encode(": keepalive\n\n")),
      KEEPALIVE_MS,
    );
  }

  /** Pages connected now. */
  get size(): number {
    return this.#streams.size;
  }

  /** A new stream that starts with `first` (the current state), then gets every message. */
  open(first: Uint8Array[], headers: HeadersInit): Response {
    let self: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        self = controller;
        for (const chunk of first) controller.enqueue(chunk);
        this.#streams.add(controller);
      },
      cancel: () => {
        this.#streams.delete(self);
      },
    }, { highWaterMark: MAX_BACKLOG_BYTES, size: (chunk) => chunk.byteLength });
    return new Response(body, {
      headers: {
        ...Object.fromEntries(new Headers(headers)),
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
      },
    });
  }

  /** Sends `data` as event `event` to every page. */
  send(event: string, data: unknown): void {
    if (this.#streams.size > 0) this.#write(sseMessage(event, data));
  }

  #write(chunk: Uint8Array): void {
    for (const controller of this.#streams) {
      if ((controller.desiredSize ?? 0) < chunk.byteLength) {
        this.#streams.delete(controller);
        controller.error(new Error("The page read too slowly"));
        continue;
      }
      controller.enqueue(chunk);
    }
  }

  /** Ends every stream. */
  close(): void {
    clearInterval(this.#keepalive);
    for (const controller of this.#streams) {
      try {
        controller.close();
      } catch {
        // Already closed by its page.
      }
    }
    this.#streams.clear();
  }
}
