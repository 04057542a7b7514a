/**
 * Server-sent events: every open page holds one `text/event-stream`
 * response, and each message goes to all of them. A page's unread bytes
 * are bounded: a message that does not fit in what a page has left is
 * skipped for that page alone (a skipped `state` is sent as soon as there
 * is room, as it replaces the ones before), so one large message never
 * disconnects anyone. Only a page that has read nothing for
 * {@linkcode STALL_MS} since a message did not fit is dropped; its browser
 * reconnects by itself. A comment line every 15 s keeps proxies from
 * closing an idle stream. At most `maxStreams` pages are connected at once.
 *
 * @module
 */

/** Bytes a page may have unread. */
export const MAX_BACKLOG_BYTES = 4 * 1024 * 1024;
/** A page whose window stayed full this long is dropped. */
export const STALL_MS = 30_000;
/** Pages connected at once, unless told otherwise. */
export const MAX_STREAMS = 20;
const KEEPALIVE_MS = 15_000;
const encoder = new TextEncoder();

/** One message: `event: <name>` and its data as one JSON line. */
export function sseMessage(event: string, data: unknown): Uint8Array {
  // JSON.stringify never leaves a raw newline, so the data is one `data:` line.
  return encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

/** Options for {@linkcode SseHub}. */
export interface SseHubOptions {
  /** @default {MAX_STREAMS} */
  maxStreams?: number;
  /** @default {MAX_BACKLOG_BYTES} */
  backlogBytes?: number;
  /** @default {STALL_MS} */
  stallMs?: number;
  /** @default {Date.now} */
  now?: () => number;
}

interface Stream {
  controller: ReadableStreamDefaultController<Uint8Array>;
  /** The latest `state` that did not fit, sent once there is room. */
  owedState?: Uint8Array;
  /** Since when a message did not fit while the page read nothing. */
  fullSince?: number;
  /** Room in its window after the last write. */
  lastRoom: number;
}

/** The open streams. */
export class SseHub {
  readonly #streams = new Set<Stream>();
  readonly #keepalive: ReturnType<typeof setInterval>;
  readonly #maxStreams: number;
  readonly #backlogBytes: number;
  readonly #stallMs: number;
  readonly #now: () => number;
  #skipped = 0;

  constructor(options: SseHubOptions = {}) {
    this.#maxStreams = options.maxStreams ?? MAX_STREAMS;
    this.#backlogBytes = options.backlogBytes ?? MAX_BACKLOG_BYTES;
    this.#stallMs = options.stallMs ?? STALL_MS;
    this.#now = options.now ?? Date.now;
    this.#keepalive = setInterval(
      () => this.#write(encoder.encode(": keepalive\n\n"), false),
      KEEPALIVE_MS,
    );
  }

  /** Pages connected now. */
  get size(): number {
    return this.#streams.size;
  }

  /** Messages skipped for a page that had no room for them, since start. */
  get skipped(): number {
    return this.#skipped;
  }

  /**
   * A new stream that starts with `first` (the current state), then gets
   * every message; 503 when `maxStreams` pages are connected already.
   */
  open(first: Uint8Array[], headers: HeadersInit): Response {
    if (this.#streams.size >= this.#maxStreams) {
      return new Response(
        `Cannot open another live stream as ${this.#maxStreams} pages are connected: close one\n`,
        {
          status: 503,
          headers: {
            ...Object.fromEntries(new Headers(headers)),
            "content-type": "text/plain; charset=utf-8",
            "retry-after": "10",
          },
        },
      );
    }
    let self: Stream;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        self = { controller, lastRoom: 0 };
        for (const chunk of first) {
          if ((controller.desiredSize ?? 0) >= chunk.byteLength) controller.enqueue(chunk);
        }
        self.lastRoom = controller.desiredSize ?? 0;
        this.#streams.add(self);
      },
      cancel: () => {
        this.#streams.delete(self);
      },
    }, { highWaterMark: this.#backlogBytes, size: (chunk) => chunk.byteLength });
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
    if (this.#streams.size > 0) this.#write(sseMessage(event, data), event === "state");
  }

  #write(chunk: Uint8Array, isState: boolean): void {
    const now = this.#now();
    for (const stream of this.#streams) {
      const { controller } = stream;
      const room = () => controller.desiredSize ?? 0;
      // A page that read since the last write, or has nothing unread, is not stalled.
      if (room() > stream.lastRoom || room() >= this.#backlogBytes) stream.fullSince = undefined;
      if (isState) stream.owedState = undefined;
      else if (stream.owedState && room() >= stream.owedState.byteLength) {
        controller.enqueue(stream.owedState);
        stream.owedState = undefined;
      }
      if (room() >= chunk.byteLength) controller.enqueue(chunk);
      else {
        this.#skipped++;
        if (isState) stream.owedState = chunk;
        stream.fullSince ??= now;
      }
      stream.lastRoom = room();
      if (stream.fullSince !== undefined && now - stream.fullSince >= this.#stallMs) {
        this.#streams.delete(stream);
        controller.error(new Error("The page read nothing for too long"));
      }
    }
  }

  /** Ends every stream. */
  close(): void {
    clearInterval(this.#keepalive);
    for (const { controller } of this.#streams) {
      try {
        controller.close();
      } catch {
        // Already closed by its page.
      }
    }
    this.#streams.clear();
  }
}
