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
