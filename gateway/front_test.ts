import assert from "node:assert/strict";
import { framingOf, GatewayFront } from "./front.ts";
import { parseCidrs } from "./client_address.ts";

Deno.test("framingOf() reads Content-Length and refuses what the server behind might read otherwise", () => {
  assert.deepEqual(framingOf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12"), { length: 12 });
  assert.deepEqual(framingOf("GET / HTTP/1.1\r\nHost: x"), { length: 0 });
  for (
    const head of [
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked",
      "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2",
      "POST / HTTP/1.1\r\nContent-Length: -1",
      "POST / HTTP/1.1\nContent-Length: 5",
      "POST / HTTP/1.1\r\nX: a\r\n b",
    ]
  ) assert.ok("refuse" in framingOf(head), head);
});

async function exchange(port: number, bytes: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode(bytes));
  let text = "";
  for await (const chunk of conn.readable) text += new TextDecoder().decode(chunk);
  return text;
}

Deno.test("GatewayFront serves pipelined requests, and refuses a big head (431), a slow one (408) and connections past its cap (503)", async () => {
  const front = await GatewayFront.start(
    async (request) => new Response(`${request.method} ${await request.text()}`),
    { hostname: "127.0.0.1", port: 0, maxConnections: 1, headDeadlineMs: 200, maxHeadBytes: 512 },
  );
  try {
    const two = await exchange(
      front.port,
      "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert.match(two, /POST abc[\s\S]*GET /);
    assert.match(
      await exchange(front.port, `GET / HTTP/1.1\r\nX: ${"a".repeat(600)}\r\n\r\n`),
      /^HTTP\/1\.1 431/,
    );
    const started = performance.now();
    assert.match(await exchange(front.port, "GET / HTTP/1.1\r\nHost: x\r\n"), /^HTTP\/1\.1 408/);
    assert.ok(performance.now() - started < 2_000);
    // One connection held open: the next is refused.
    const held = await Deno.connect({ hostname: "127.0.0.1", port: front.port });
    await held.write(new TextEncoder().encode("G"));
    while (front.connections < 1) await new Promise((r) => setTimeout(r, 5));
    assert.match(await exchange(front.port, "GET / HTTP/1.1\r\n\r\n"), /^HTTP\/1\.1 503/);
    held.close();
  } finally {
    await front.close();
  }
});

/** Reads from `conn` until `pattern` is in what came, or the connection ends. */
async function readUntil(conn: Deno.Conn, pattern: RegExp): Promise<string> {
  let text = "";
  const buffer = new Uint8Array(4096);
  while (!pattern.test(text)) {
    const n = await conn.read(buffer);
    if (n === null) break;
    text += new TextDecoder().decode(buffer.subarray(0, n));
  }
  return text;
}

Deno.test("GatewayFront reads a body only as the handler reads it: a refusal before the body costs its head alone", async () => {
  let bodies = 0;
  const front = await GatewayFront.start(
    async (request) => {
      if (!request.headers.get("authorization")) return new Response("no key", { status: 401 });
      bodies++;
      return new Response(`got ${(await request.text()).length}`);
    },
    { hostname: "127.0.0.1", port: 0, bodyDeadlineMs: 30_000 },
  );
  try {
    // A megabyte announced and never sent: answered at once, the connection closed.
    const started = performance.now();
    const refused = await exchange(
      front.port,
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n",
    );
    assert.match(refused, /^HTTP\/1\.1 401[\s\S]*connection: close[\s\S]*no key$/);
    assert.ok(performance.now() - started < 5_000, "not held until the body's deadline");
    // Expect: 100-continue is answered once the handler reads the body.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: front.port });
    try {
      await conn.write(new TextEncoder().encode(
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: k\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
      ));
      assert.match(await readUntil(conn, /100 Continue\r\n\r\n/), /^HTTP\/1\.1 100 Continue/);
      await conn.write(new TextEncoder().encode("hello"));
      assert.match(await readUntil(conn, /got \d+/), /HTTP\/1\.1 200 OK[\s\S]*got 5/);
    } finally {
      conn.close();
    }
    assert.equal(bodies, 1);
  } finally {
    await front.close();
  }
});

Deno.test("GatewayFront refuses malformed request lines and headers (400), answers HEAD without a body, and closes HTTP/1.0", async () => {
  const front = await GatewayFront.start(
    () => new Response("body", { headers: { "x-a": "1" } }),
    { hostname: "127.0.0.1", port: 0 },
  );
  try {
    for (
      const bad of [
        "GET http://evil/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: x\r\n\r\n",
        "G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET / HTTP/1.1\r\n: x\r\n\r\n",
      ]
    ) assert.match(await exchange(front.port, bad), /^HTTP\/1\.1 400 /, JSON.stringify(bad));
    const head = await exchange(
      front.port,
      "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(head, /content-length: 4\r\n/);
    assert.ok(head.endsWith("\r\n\r\n"), "no body after a HEAD's headers");
    const old = await exchange(front.port, "GET / HTTP/1.0\r\n\r\n");
    assert.match(old, /connection: close[\s\S]*\r\n\r\nbody$/);
  } finally {
    await front.close();
  }
});

Deno.test("GatewayFront streams server-sent events in chunks and tells the handler when the reader leaves", async () => {
  const { promise: left, resolve: leave } = Promise.withResolvers<void>();
  const front = await GatewayFront.start(
    (request) => {
      request.signal.addEventListener("abort", () => leave(), { once: true });
      let timer: ReturnType<typeof setInterval>;
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode("event: pending\ndata: {}\n\n"));
          timer = setInterval(() => controller.enqueue(new TextEncoder().encode(": ka\n\n")), 20);
        },
        cancel() {
          clearInterval(timer);
        },
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    },
    { hostname: "127.0.0.1", port: 0 },
  );
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: front.port });
    await conn.write(new TextEncoder().encode("GET /e HTTP/1.1\r\nHost: x\r\n\r\n"));
    const text = await readUntil(conn, /: ka/);
    assert.match(text, /transfer-encoding: chunked[\s\S]*event: pending/);
    conn.close();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      left,
      new Promise((_, reject) =>
        timer = setTimeout(
          () => reject(new Error("the handler was never told its reader left")),
          5_000,
        )
      ),
    ]).finally(() => clearTimeout(timer));
  } finally {
    await front.close();
  }
});

Deno.test("GatewayFront tells the handler its TCP peer, and believes X-Forwarded-For only from a trusted proxy", async () => {
  const echo = (request: Request, client: { address: string; proto: string }) =>
    Response.json({ ...client, host: request.headers.get("host") });
  const ask = async (port: number, extra: string) => {
    const text = await exchange(
      port,
      `GET / HTTP/1.1\r\nHost: gw\r\n${extra}Connection: close\r\n\r\n`,
    );
    return JSON.parse(text.slice(text.indexOf("\r\n\r\n") + 4));
  };
  const forged = "X-Forwarded-For: 6.6.6.6, 203.0.113.9\r\nX-Forwarded-Proto: https\r\n";
  const untrusting = await GatewayFront.start(echo, { hostname: "127.0.0.1", port: 0 });
  try {
    const seen = await ask(untrusting.port, forged);
    assert.deepEqual(
      [seen.address, seen.proto],
      ["127.0.0.1", "http"],
      "a forgery changes nothing",
    );
  } finally {
    await untrusting.close();
  }
  const trusting = await GatewayFront.start(echo, {
    hostname: "127.0.0.1",
    port: 0,
    trustedProxies: parseCidrs("127.0.0.0/8"),
  });
  try {
    const seen = await ask(trusting.port, forged);
    assert.deepEqual([seen.address, seen.proto], ["203.0.113.9", "https"]);
    assert.equal((await ask(trusting.port, "")).address, "127.0.0.1", "no header: the proxy");
  } finally {
    await trusting.close();
  }
});
