/**
 * The gateway's HTTP/1.1 server: the listening socket and the reading of
 * each request. `Deno.serve` gives a client all the time it likes to send
 * its headers (a client sending one byte every 20 ms held a connection for
 * a minute and was never cut, measured with Deno 2.9.6), and takes any
 * number of connections; so the gateway reads requests itself. It caps how
 * many connections are open (503 past it), reads each request's head
 * within a deadline and a size (408, 431), and hands the handler a
 * `Request` whose body is read from the connection only as the handler
 * reads it, within its own deadline: a request refused before its body
 * (no key, say) costs no more than its head. Requests that could be framed
 * two ways (Transfer-Encoding, bare line feeds, two Content-Lengths,
 * folded lines) are refused. It tells the handler who the client is: the
 * TCP peer, or the client a trusted proxy names (client_address.ts). It
 * once sat in front of a `Deno.serve` on a
 * loopback port and forwarded the bytes; serving here halves the gateway's
 * CPU per call (docs/performance.md, "The HTTP gateway").
 *
 * @module
 */

import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { traceContextOf, tracingEnabled } from "../core/trace_context.ts";
import { type Cidr, type ClientInfo, clientOf, type ForwardedHeader } from "./client_address.ts";

/** Options of {@linkcode GatewayFront.start}. */
export interface FrontOptions {
  hostname: string;
  port: number;
  /** @default {1024} */
  maxConnections?: number;
  /** From a request's first byte to the end of its head. @default {5000} */
  headDeadlineMs?: number;
  /** The largest request head. @default {16384} */
  maxHeadBytes?: number;
  /** From the end of a head to the end of its body. @default {10000} */
  bodyDeadlineMs?: number;
  /** How long a connection may wait between requests. @default {30000} */
  idleMs?: number;
  tls?: { cert: string; key: string };
  /** Proxies whose forwarding headers say who the client is. @default {[]} */
  trustedProxies?: readonly Cidr[];
  /** The header those proxies write. @default {"x-forwarded-for"} */
  forwardedHeader?: ForwardedHeader;
}

const encoder = new TextEncoder();
const HEAD_END = [13, 10, 13, 10];

function plainResponse(status: number, reason: string, error: string, message: string): Uint8Array {
  const body = JSON.stringify({ error, message });
  return encoder.encode(
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${
      encoder.encode(body).byteLength
    }\r\nconnection: close\r\n${status === 503 ? "retry-after: 1\r\n" : ""}\r\n${body}`,
  );
}

function indexOfHeadEnd(buffer: Uint8Array, from: number): number {
  outer: for (let i = Math.max(0, from - 3); i <= buffer.length - 4; i++) {
    for (let j = 0; j < 4; j++) if (buffer[i + j] !== HEAD_END[j]) continue outer;
    return i;
  }
  return -1;
}

/** The body length a head declares, or a refusal. */
export function framingOf(head: string): { length: number } | { refuse: string } {
  if (/(^|[^\r])\n/.test(head)) {
    return { refuse: "Cannot read a request head with bare line feeds: end lines with CRLF" };
  }
  let length: number | undefined;
  for (const line of head.split("\r\n").slice(1)) {
    if (/^[ \t]/.test(line)) {
      return { refuse: "Cannot read folded header lines: send each header on one line" };
    }
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "transfer-encoding") {
      return { refuse: "Cannot take a body by Transfer-Encoding: send it with Content-Length" };
    }
    if (name === "content-length") {
      if (!/^\d{1,15}$/.test(value) || (length !== undefined && length !== Number(value))) {
        return { refuse: "Cannot read the Content-Length: send one, a whole number" };
      }
      length = Number(value);
    }
  }
  return { length: length ?? 0 };
}

/** What the front serves: a request and who sent it. */
export type FrontHandler = (
  request: Request,
  client: ClientInfo,
) => Response | Promise<Response>;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP\/1\.([01])$/;
const CRLF = encoder.encode("\r\n");
const CONTINUE = encoder.encode("HTTP/1.1 100 Continue\r\n\r\n");
const REASONS: Record<number, string> = {
  200: "OK",
  201: "Created",
  202: "Accepted",
  204: "No Content",
  304: "Not Modified",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

/** Bytes as a string of the same code units, as HTTP heads are read. */
function latin1(bytes: Uint8Array): string {
  let text = "";
  for (let at = 0; at < bytes.length; at += 8192) {
    text += String.fromCharCode(...bytes.subarray(at, at + 8192));
  }
  return text;
}

/** One connection's bytes: what was read ahead, and the next read. */
class Input {
  buffer: Uint8Array = new Uint8Array(0);
  ended = false;
  /** When the read under way is late. */
  deadline = Infinity;
  #expire?: () => void;
  readonly #conn: Deno.Conn;
  #pending?: Promise<{ done: true; value?: undefined } | { done: false; value: Uint8Array }>;

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  #read(): Promise<{ done: true; value?: undefined } | { done: false; value: Uint8Array }> {
    // One read at a time, kept across a timeout: the bytes it brings are
    // the next ones whoever asks next. `read()` rather than `readable`:
    // the stream's machinery cost more than the rest of a request's reading.
    return this.#pending ??= (async () => {
      const chunk = new Uint8Array(16_384);
      try {
        const n = await this.#conn.read(chunk);
        return n === null
          ? { done: true as const }
          : { done: false as const, value: chunk.subarray(0, n) };
      } catch {
        return { done: true as const };
      }
    })();
  }

  /**
   * The next chunk, `end` at the end of the stream, or `late` once `ms` have
   * passed, as the front's sweep finds (a timer per read would cost more than
   * the read).
   */
  async next(ms: number): Promise<Uint8Array | "end" | "late"> {
    if (this.ended) return "end";
    if (ms <= 0) return "late";
    this.deadline = performance.now() + ms;
    const late = new Promise<"late">((resolve) => this.#expire = () => resolve("late"));
    try {
      const result = await Promise.race([this.#read(), late]);
      if (result === "late") return "late";
      this.#pending = undefined;
      if (result.done) {
        this.ended = true;
        return "end";
      }
      return result.value;
    } finally {
      this.deadline = Infinity;
      this.#expire = undefined;
    }
  }

  /** Ends a read whose deadline passed. */
  sweep(now: number): void {
    if (now >= this.deadline) this.#expire?.();
  }

  /**
   * Resolves when the peer closes, reading ahead meanwhile (up to `limit`
   * bytes) until `stop()`: a streamed response learns that its reader left.
   */
  watch(limit: number): { closed: Promise<void>; stop(): void } {
    let stop!: () => void;
    const stopped = new Promise<"stop">((resolve) => stop = () => resolve("stop"));
    const closed = (async () => {
      while (this.buffer.length <= limit) {
        const result = await Promise.race([this.#read(), stopped]);
        if (result === "stop") break;
        this.#pending = undefined;
        if (result.done) {
          this.ended = true;
          return;
        }
        this.buffer = concat(this.buffer, result.value);
      }
      await new Promise<never>(() => {});
    })();
    return { closed, stop };
  }
}

/** A request as read from the connection, before the handler. */
interface ReadRequest {
  request: Request;
  keepAlive: boolean;
  method: string;
  /** Whether all of its body was read (so the next request can be). */
  bodyDone(): boolean;
  /** Tells the handler, through the request's signal, that its client left. */
  abort(): void;
}

/** The listening socket and the requests read from it. */
export class GatewayFront {
  readonly #listener: Deno.Listener;
  readonly #handler: FrontHandler;
  readonly #options: Required<Omit<FrontOptions, "tls" | "trustedProxies" | "forwardedHeader">>;
  readonly #clientOptions: {
    trusted: readonly Cidr[];
    header: ForwardedHeader;
    proto: "http" | "https";
  };
  readonly #scheme: string;
  readonly #conns = new Set<Deno.Conn>();
  readonly #serving: Promise<void>;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #inputs = new Set<Input>();
  readonly #sweeper: ReturnType<typeof setInterval>;
  #closed = false;

  private constructor(
    listener: Deno.Listener,
    handler: FrontHandler,
    options: FrontOptions,
  ) {
    this.#listener = listener;
    this.#handler = handler;
    this.#scheme = options.tls ? "https" : "http";
    this.#clientOptions = {
      trusted: options.trustedProxies ?? [],
      header: options.forwardedHeader ?? "x-forwarded-for",
      proto: options.tls ? "https" : "http",
    };
    this.#options = {
      hostname: options.hostname,
      port: options.port,
      maxConnections: options.maxConnections ?? 1024,
      headDeadlineMs: options.headDeadlineMs ?? 5_000,
      maxHeadBytes: options.maxHeadBytes ?? 16_384,
      bodyDeadlineMs: options.bodyDeadlineMs ?? 10_000,
      idleMs: options.idleMs ?? 30_000,
    };
    // Deadlines are kept to a tenth of a second, by one timer for all.
    const tick = Math.min(100, this.#options.headDeadlineMs / 4, this.#options.bodyDeadlineMs / 4);
    this.#sweeper = setInterval(() => {
      const now = performance.now();
      for (const input of this.#inputs) input.sweep(now);
    }, Math.max(5, tick));
    this.#serving = this.#accept();
  }

  /** Serves `handler` on a socket listening as `options` say. */
  static start(handler: FrontHandler, options: FrontOptions): Promise<GatewayFront> {
    const listener = options.tls
      ? Deno.listenTls({
        hostname: options.hostname,
        port: options.port,
        cert: options.tls.cert,
        key: options.tls.key,
      })
      : Deno.listen({ hostname: options.hostname, port: options.port });
    return Promise.resolve(new GatewayFront(listener, handler, options));
  }

  get hostname(): string {
    return (this.#listener.addr as Deno.NetAddr).hostname;
  }

  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  /** Connections open now. */
  get connections(): number {
    return this.#conns.size;
  }

  /** Stops listening, lets the requests being handled answer, then closes every connection. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#listener.close();
    await this.#serving;
    await Promise.allSettled([...this.#inFlight]);
    for (const conn of this.#conns) closeQuietly(conn);
    clearInterval(this.#sweeper);
  }

  async #accept(): Promise<void> {
    while (!this.#closed) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch {
        if (this.#closed) return;
        continue;
      }
      if (this.#conns.size >= this.#options.maxConnections) {
        conn.write(plainResponse(
          503,
          "Service Unavailable",
          "too_many_connections",
          `Cannot take more than ${this.#options.maxConnections} connections: retry after 1 s, or reuse a connection`,
        )).catch(() => {}).finally(() => closeQuietly(conn));
        continue;
      }
      this.#conns.add(conn);
      if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
      this.#serve(conn).catch(() => {}).finally(() => {
        this.#conns.delete(conn);
        closeQuietly(conn);
      });
    }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    const input = new Input(conn);
    this.#inputs.add(input);
    try {
      for (let first = true; !this.#closed; first = false) {
        const read = await this.#read(conn, input, first);
        if (read === undefined) return;
        let done!: () => void;
        const handled = new Promise<void>((resolve) => done = resolve);
        this.#inFlight.add(handled);
        try {
          const reuse = await this.#answer(conn, input, read);
          if (!reuse || !read.bodyDone()) return;
        } finally {
          done();
          this.#inFlight.delete(handled);
        }
      }
    } finally {
      this.#inputs.delete(input);
    }
  }

  /** Reads the next request's head, within its deadlines; `undefined` once the connection is done. */
  async #read(conn: Deno.Conn, input: Input, first: boolean): Promise<ReadRequest | undefined> {
    const o = this.#options;
    const refuse = async (status: number, error: string, message: string) => {
      await writeAll(conn, plainResponse(status, REASONS[status], error, message)).catch(() => {});
      return undefined;
    };
    // Between requests: wait for the next one's first byte.
    if (input.buffer.length === 0) {
      const got = await input.next(first ? o.headDeadlineMs : o.idleMs);
      if (got === "end") return undefined;
      if (got === "late") {
        if (!first) return undefined;
        return await refuse(
          408,
          "too_slow",
          `Cannot wait longer than ${o.headDeadlineMs} ms for a request: send it at once`,
        );
      }
      input.buffer = got;
    }
    // The head, within its deadline and size.
    const headDeadline = performance.now() + o.headDeadlineMs;
    let end = indexOfHeadEnd(input.buffer, 0);
    while (end < 0) {
      if (input.buffer.length > o.maxHeadBytes) {
        return await refuse(
          431,
          "head_too_large",
          `Cannot read a request head over ${o.maxHeadBytes} bytes: send fewer or shorter headers`,
        );
      }
      const got = await input.next(headDeadline - performance.now());
      if (got === "end") return undefined;
      if (got === "late") {
        return await refuse(
          408,
          "too_slow",
          `Cannot wait longer than ${o.headDeadlineMs} ms for a request's headers: send them at once`,
        );
      }
      const from = input.buffer.length;
      input.buffer = concat(input.buffer, got);
      end = indexOfHeadEnd(input.buffer, from);
    }
    if (end + 4 > o.maxHeadBytes) {
      return await refuse(
        431,
        "head_too_large",
        `Cannot read a request head over ${o.maxHeadBytes} bytes: send fewer or shorter headers`,
      );
    }
    const head = latin1(input.buffer.subarray(0, end));
    input.buffer = input.buffer.slice(end + 4);
    const framing = framingOf(head);
    if ("refuse" in framing) return await refuse(400, "bad_framing", framing.refuse);
    const lines = head.split("\r\n");
    const line = REQUEST_LINE.exec(lines[0]);
    if (!line || !(line[2].startsWith("/") || (line[1] === "OPTIONS" && line[2] === "*"))) {
      return await refuse(
        400,
        "bad_request_line",
        "Cannot read the request line: send 'METHOD /path HTTP/1.1'",
      );
    }
    const [, method, target, minor] = line;
    const headers = new Headers();
    for (const field of lines.slice(1)) {
      const colon = field.indexOf(":");
      const name = field.slice(0, colon);
      try {
        if (colon < 1 || !TOKEN.test(name)) throw new TypeError(name);
        headers.append(name, field.slice(colon + 1).trim());
      } catch {
        return await refuse(
          400,
          "bad_header",
          "Cannot read a header line: send each as 'Name: value', the name a token",
        );
      }
    }
    const listening = this.hostname.includes(":") ? `[${this.hostname}]` : this.hostname;
    let url: URL;
    try {
      url = new URL(
        `${this.#scheme}://${headers.get("host") ?? `${listening}:${this.port}`}${
          target === "*" ? "/" : target
        }`,
      );
    } catch {
      try {
        url = new URL(`${this.#scheme}://${listening}:${this.port}${target}`);
      } catch {
        return await refuse(
          400,
          "bad_request_line",
          "Cannot read the request's path: send a path that is a URL's",
        );
      }
    }
    const connection = (headers.get("connection") ?? "").toLowerCase();
    const keepAlive = minor === "1"
      ? !/\bclose\b/.test(connection)
      : /\bkeep-alive\b/.test(connection);
    // The body, read from the connection as the handler reads it.
    let bodyLeft = framing.length;
    const bodyDeadline = performance.now() + o.bodyDeadlineMs;
    let askedToContinue = false;
    const wantsContinue = /^100-continue$/i.test(headers.get("expect") ?? "");
    let body: BodyInit | null = null;
    if (bodyLeft === 0 || method === "GET" || method === "HEAD") {
      // No body to read.
    } else if (input.buffer.length >= bodyLeft) {
      // All of it came with the head (as a small request's does): no stream.
      body = new Uint8Array(input.buffer.subarray(0, bodyLeft));
      input.buffer = input.buffer.slice(bodyLeft);
      bodyLeft = 0;
    } else {
      body = new ReadableStream<Uint8Array>({
        pull: async (controller) => {
          if (input.buffer.length === 0) {
            if (wantsContinue && !askedToContinue) {
              askedToContinue = true;
              await writeAll(conn, CONTINUE);
            }
            const got = await input.next(bodyDeadline - performance.now());
            if (got === "end" || got === "late") {
              controller.error(
                new Error(
                  got === "late"
                    ? `Cannot wait longer than ${o.bodyDeadlineMs} ms for the request body: send it at once`
                    : "The client closed the connection before the end of its body",
                ),
              );
              return;
            }
            input.buffer = got;
          }
          const take = Math.min(input.buffer.length, bodyLeft);
          controller.enqueue(input.buffer.slice(0, take));
          input.buffer = input.buffer.slice(take);
          bodyLeft -= take;
          if (bodyLeft === 0) controller.close();
        },
      }, { highWaterMark: 0 });
    }
    const aborter = new AbortController();
    let request: Request;
    try {
      request = new Request(url, { method, headers, body, signal: aborter.signal });
    } catch {
      return await refuse(
        400,
        "bad_method",
        `Cannot take a ${method} request: use GET, POST or DELETE`,
      );
    }
    // A GET or HEAD with a body is refused by Request: its body is never read.
    if (body === null) bodyLeft = method === "GET" || method === "HEAD" ? bodyLeft : 0;
    return {
      request,
      keepAlive,
      method,
      bodyDone: () => bodyLeft === 0,
      abort: () => aborter.abort(),
    };
  }

  /**
   * The handler inside a server span whose parent is the request's
   * `traceparent`, so that the calls it makes join the caller's trace.
   */
  async #traced(request: Request, client: ClientInfo): Promise<Response> {
    const parent = traceContextOf({
      traceparent: request.headers.get("traceparent") ?? undefined,
      tracestate: request.headers.get("tracestate") ?? undefined,
    });
    const path = new URL(request.url).pathname;
    const span = trace.getTracer("gateway").startSpan(`${request.method} ${path}`, {
      kind: SpanKind.SERVER,
      attributes: { "http.request.method": request.method, "url.path": path },
    }, parent);
    try {
      const response = await context.with(
        trace.setSpan(parent, span),
        () => this.#handler(request, client),
      );
      span.setAttribute("http.response.status_code", response.status);
      if (response.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      return response;
    } catch (error) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: String(error) });
      throw error;
    } finally {
      span.end();
    }
  }

  /** Runs the handler and writes its response; whether the connection may serve another request. */
  async #answer(conn: Deno.Conn, input: Input, read: ReadRequest): Promise<boolean> {
    let response: Response;
    try {
      const client = clientOf(
        (conn.remoteAddr as Deno.NetAddr).hostname,
        read.request.headers,
        this.#clientOptions,
      );
      response = tracingEnabled()
        ? await this.#traced(read.request, client)
        : await this.#handler(read.request, client);
    } catch {
      response = new Response(
        JSON.stringify({
          error: "internal",
          message: "The gateway failed to answer: retry; the gateway's log says why",
        }),
        { status: 500, headers: { "content-type": "application/json" } },
      );
    }
    const keepAlive = read.keepAlive && !this.#closed && read.bodyDone();
    const status = response.status;
    const lines = [`HTTP/1.1 ${status} ${response.statusText || REASONS[status] || "Status"}`];
    for (const [name, value] of response.headers) {
      if (
        name === "set-cookie" || name === "content-length" || name === "connection" ||
        name === "transfer-encoding"
      ) continue;
      lines.push(`${name}: ${value}`);
    }
    for (const cookie of response.headers.getSetCookie()) lines.push(`set-cookie: ${cookie}`);
    if (!keepAlive) lines.push("connection: close");
    const bodiless = read.method === "HEAD" || status === 204 || status === 304;
    const streamed = response.body !== null && !bodiless &&
      /^text\/event-stream/i.test(response.headers.get("content-type") ?? "");
    if (!streamed) {
      const noContent = status === 204 || status === 304;
      const bytes = response.body === null || noContent
        ? new Uint8Array(0)
        : new Uint8Array(await response.arrayBuffer());
      // A HEAD's answer says the length its GET's body would have.
      if (!noContent) lines.push(`content-length: ${bytes.byteLength}`);
      const head = encoder.encode(lines.join("\r\n") + "\r\n\r\n");
      await writeAll(conn, bytes.byteLength === 0 || bodiless ? head : concat(head, bytes));
      return keepAlive;
    }
    // A stream (server-sent events): chunks as they come, until it ends or
    // its reader leaves, which the request's signal tells the handler.
    lines.push("transfer-encoding: chunked");
    await writeAll(conn, encoder.encode(lines.join("\r\n") + "\r\n\r\n"));
    const reader = response.body!.getReader();
    const watch = input.watch(this.#options.maxHeadBytes);
    const gone = watch.closed.then(() => "gone" as const);
    try {
      while (true) {
        const next = await Promise.race([reader.read(), gone]);
        if (next === "gone") {
          read.abort();
          await reader.cancel().catch(() => {});
          return false;
        }
        if (next.done) break;
        if (next.value.byteLength === 0) continue;
        await writeAll(
          conn,
          concat(
            concat(encoder.encode(next.value.byteLength.toString(16) + "\r\n"), next.value),
            CRLF,
          ),
        );
      }
      await writeAll(conn, encoder.encode("0\r\n\r\n"));
      return keepAlive;
    } catch {
      read.abort();
      await reader.cancel().catch(() => {});
      return false;
    } finally {
      watch.stop();
    }
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += await conn.write(bytes.subarray(at));
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Closed already.
  }
}
