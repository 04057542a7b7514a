/**
 * The gateway's front: the listening socket, before `Deno.serve`.
 * `Deno.serve` gives a client all the time it likes to send its headers
 * (a client sending one byte every 20 ms held a connection for a minute
 * and was never cut, measured with Deno 2.9.6), and takes any number of
 * connections. The front accepts each connection, caps how many are open
 * (503 past it), and reads each request's head within a deadline and a
 * size (408, 431), then its body (by Content-Length) within a deadline,
 * before the bytes go on to the `Deno.serve` behind it, on a loopback port
 * of its own; responses flow back untouched. Requests it cannot frame
 * exactly as the server behind will (Transfer-Encoding, bare line feeds,
 * two Content-Lengths) are refused, so both read the same requests.
 * The server behind sees the front as every request's peer, so the front
 * tells the handler who the client is: the TCP peer it accepted, or the
 * client a trusted proxy names (client_address.ts).
 *
 * @module
 */

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

/** What the front serves: a request and who sent it. */
export type FrontHandler = (
  request: Request,
  client: ClientInfo,
) => Response | Promise<Response>;

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

/** The listening front and the server behind it. */
export class GatewayFront {
  readonly #listener: Deno.Listener;
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #options: Required<
    Omit<FrontOptions, "tls" | "trustedProxies" | "forwardedHeader">
  >;
  /** The client's address by the local port of the front's connection to the server behind. */
  readonly #peers: Map<number, string>;
  readonly #conns = new Set<Deno.Conn>();
  readonly #serving: Promise<void>;
  #closed = false;

  private constructor(
    listener: Deno.Listener,
    server: Deno.HttpServer<Deno.NetAddr>,
    options: FrontOptions,
    peers: Map<number, string>,
  ) {
    this.#peers = peers;
    this.#listener = listener;
    this.#server = server;
    this.#options = {
      hostname: options.hostname,
      port: options.port,
      maxConnections: options.maxConnections ?? 1024,
      headDeadlineMs: options.headDeadlineMs ?? 5_000,
      maxHeadBytes: options.maxHeadBytes ?? 16_384,
      bodyDeadlineMs: options.bodyDeadlineMs ?? 10_000,
      idleMs: options.idleMs ?? 30_000,
    };
    this.#serving = this.#accept();
  }

  /** Serves `handler` behind a front listening as `options` say. */
  static start(handler: FrontHandler, options: FrontOptions): Promise<GatewayFront> {
    const peers = new Map<number, string>();
    const clientOptions = {
      trusted: options.trustedProxies ?? [],
      header: options.forwardedHeader ?? "x-forwarded-for",
      proto: options.tls ? "https" : "http",
    } as const;
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      (request, info) =>
        handler(request, clientOf(peers.get(info.remoteAddr.port), request.headers, clientOptions)),
    );
    const listener = options.tls
      ? Deno.listenTls({
        hostname: options.hostname,
        port: options.port,
        cert: options.tls.cert,
        key: options.tls.key,
      })
      : Deno.listen({ hostname: options.hostname, port: options.port });
    return Promise.resolve(new GatewayFront(listener, server, options, peers));
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

  async close(): Promise<void> {
    this.#closed = true;
    this.#listener.close();
    for (const conn of this.#conns) closeQuietly(conn);
    await this.#serving;
    await this.#server.shutdown();
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
      this.#serve(conn).finally(() => {
        this.#conns.delete(conn);
        closeQuietly(conn);
      });
    }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    let upstream: Deno.TcpConn;
    try {
      upstream = await Deno.connect({ hostname: "127.0.0.1", port: this.#server.addr.port });
    } catch {
      return;
    }
    // Known before the first byte goes up, so before the server reads a request.
    const port = (upstream.localAddr as Deno.NetAddr).port;
    this.#peers.set(port, (conn.remoteAddr as Deno.NetAddr).hostname);
    upstream.setNoDelay(true);
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    const back = (async () => {
      try {
        for await (const chunk of upstream.readable) await writeAll(conn, chunk);
      } catch {
        // Either side went away: both are closed below.
      }
      closeQuietly(conn);
    })();
    try {
      await this.#forward(conn, upstream);
    } catch {
      // A broken or timed-out client: both sides are closed below.
    } finally {
      closeQuietly(upstream);
      await back;
      this.#peers.delete(port);
    }
  }

  /** Forwards `conn`'s requests to `upstream`, each within its deadlines. */
  async #forward(conn: Deno.Conn, upstream: Deno.Conn): Promise<void> {
    const o = this.#options;
    const reader = conn.readable.getReader();
    let buffer: Uint8Array = new Uint8Array(0);
    let first = true;
    const refuse = async (status: number, reason: string, error: string, message: string) => {
      await writeAll(conn, plainResponse(status, reason, error, message)).catch(() => {});
    };
    try {
      while (true) {
        // Between requests: wait for the next one's first byte.
        if (buffer.length === 0) {
          const got = await readWithin(reader, first ? o.headDeadlineMs : o.idleMs);
          if (got === "late" || got === "end") {
            if (got === "late" && first) {
              await refuse(
                408,
                "Request Timeout",
                "too_slow",
                `Cannot wait longer than ${o.headDeadlineMs} ms for a request: send it at once`,
              );
            }
            return;
          }
          buffer = got;
        }
        first = false;
        // The head, within its deadline and size.
        const headDeadline = performance.now() + o.headDeadlineMs;
        let end = indexOfHeadEnd(buffer, 0);
        while (end < 0) {
          if (buffer.length > o.maxHeadBytes) {
            await refuse(
              431,
              "Request Header Fields Too Large",
              "head_too_large",
              `Cannot read a request head over ${o.maxHeadBytes} bytes: send fewer or shorter headers`,
            );
            return;
          }
          const got = await readWithin(reader, headDeadline - performance.now());
          if (got === "end") return;
          if (got === "late") {
            await refuse(
              408,
              "Request Timeout",
              "too_slow",
              `Cannot wait longer than ${o.headDeadlineMs} ms for a request's headers: send them at once`,
            );
            return;
          }
          const from = buffer.length;
          buffer = concat(buffer, got);
          end = indexOfHeadEnd(buffer, from);
        }
        const headBytes = end + 4;
        if (headBytes > o.maxHeadBytes) {
          await refuse(
            431,
            "Request Header Fields Too Large",
            "head_too_large",
            `Cannot read a request head over ${o.maxHeadBytes} bytes: send fewer or shorter headers`,
          );
          return;
        }
        const framing = framingOf(new TextDecoder().decode(buffer.subarray(0, end)));
        if ("refuse" in framing) {
          await refuse(400, "Bad Request", "bad_framing", framing.refuse);
          return;
        }
        // The head and what of the body is here already.
        let bodyLeft = framing.length;
        const inHand = Math.min(buffer.length - headBytes, bodyLeft);
        await writeAll(upstream, buffer.subarray(0, headBytes + inHand));
        bodyLeft -= inHand;
        buffer = buffer.slice(headBytes + inHand);
        const bodyDeadline = performance.now() + o.bodyDeadlineMs;
        while (bodyLeft > 0) {
          const got = await readWithin(reader, bodyDeadline - performance.now());
          if (got === "end" || got === "late") return;
          const take = Math.min(got.length, bodyLeft);
          await writeAll(upstream, got.subarray(0, take));
          bodyLeft -= take;
          if (take < got.length) buffer = got.slice(take);
        }
      }
    } finally {
      reader.releaseLock();
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

/** The next chunk, `end` at the end of the stream, or `late` after `ms`. */
async function readWithin(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  ms: number,
): Promise<Uint8Array | "end" | "late"> {
  if (ms <= 0) return "late";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), ms));
  try {
    const result = await Promise.race([reader.read(), late]);
    if (result === "late") return "late";
    return result.done ? "end" : result.value;
  } finally {
    clearTimeout(timer);
  }
}
