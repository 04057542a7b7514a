import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import {
  type CallbackPost,
  CallbackRefused,
  checkCallbackUrl,
  deliverCallback,
  nonPublicReason,
  type Resolve,
  signCallback,
  verifyCallback,
} from "./callbacks.ts";

const POLICY = {
  hosts: ["hooks.example.com", "*.example.org"],
  allowPrivate: false,
  brokerHosts: ["rabbitmq"],
};
const DNS: Record<string, string[]> = {
  "hooks.example.com": ["93.184.216.34"],
  "a.example.org": ["2606:2800:220:1::1"],
  "rebind.example.org": ["93.184.216.34", "127.0.0.1"],
  "meta.example.org": ["169.254.169.254"],
  "inside.example.org": ["10.1.2.3"],
  "broker.example.org": ["198.51.100.7"],
  rabbitmq: ["198.51.100.7"],
};
const resolve: Resolve = (host) => Promise.resolve(DNS[host] ?? []);

Deno.test("nonPublicReason() names loopback, private, link-local, shared, mapped and unique-local addresses", () => {
  for (
    const [address, reason] of [
      ["127.0.0.1", "loopback"],
      ["10.0.0.1", "private"],
      ["172.20.1.1", "private"],
      ["192.168.1.1", "private"],
      ["169.254.169.254", "link-local"],
      ["100.64.0.1", "shared (carrier-grade NAT)"],
      ["0.0.0.0", "unspecified"],
      ["::1", "loopback"],
      ["::", "unspecified"],
      ["::ffff:127.0.0.1", "loopback"],
      ["::ffff:10.0.0.1", "private"],
      ["fe80::1", "link-local"],
      ["fd00::1", "private (unique local)"],
    ]
  ) assert.equal(nonPublicReason(address), reason, address);
  for (const address of ["93.184.216.34", "2606:2800:220:1::1", "172.32.0.1"]) {
    assert.equal(nonPublicReason(address), undefined, address);
  }
});

Deno.test("checkCallbackUrl() takes an allowed host with public addresses only", async () => {
  assert.equal(
    (await checkCallbackUrl("https://hooks.example.com/done", POLICY, resolve)).host,
    "hooks.example.com",
  );
  assert.ok(await checkCallbackUrl("http://a.example.org/x", POLICY, resolve));
  for (
    const [url, why] of [
      ["https://other.example.com/", /--callback-hosts/],
      ["https://rebind.example.org/", /127\.0\.0\.1, a loopback address/],
      ["https://meta.example.org/", /link-local/],
      ["https://inside.example.org/", /private/],
      ["https://broker.example.org/", /the broker's address/],
      ["https://user:pw@hooks.example.com/", /credentials/],
      ["file:///etc/passwd", /over file:/],
      ["gopher://hooks.example.com/", /over gopher:/],
      ["not a url", /no URL/],
      ["https://nowhere.example.org/", /no address/],
    ] as const
  ) {
    await assert.rejects(
      checkCallbackUrl(url, POLICY, resolve),
      (e) => e instanceof CallbackRefused && why.test(e.message),
      url,
    );
  }
  // A literal loopback or broker address, even when allowed by name.
  const byAddress = { ...POLICY, hosts: ["127.0.0.1", "198.51.100.7", "[::1]", "::1"] };
  await assert.rejects(checkCallbackUrl("http://127.0.0.1:8080/", byAddress, resolve), /loopback/);
  await assert.rejects(checkCallbackUrl("http://[::1]/", byAddress, resolve), /loopback/);
  await assert.rejects(checkCallbackUrl("http://198.51.100.7/", byAddress, resolve), /broker/);
  // Unless explicitly allowed.
  assert.ok(
    await checkCallbackUrl("http://127.0.0.1:8080/", { ...byAddress, allowPrivate: true }, resolve),
  );
});

Deno.test("deliverCallback() retries until a 2xx, a bounded number of times, and follows no redirect", async () => {
  const seen: CallbackPost[] = [];
  const answers = [500, 503, 204];
  const post = (request: CallbackPost) => {
    seen.push(request);
    return Promise.resolve(answers.shift() ?? 500);
  };
  const options = { policy: POLICY, resolve, post, firstDelayMs: 1 };
  assert.equal(await deliverCallback("https://hooks.example.com/d", { a: 1 }, "c1", options), true);
  assert.equal(seen.length, 3);
  assert.ok(seen.every((s) => s.headers["x-gateway-call-id"] === "c1"));
  assert.ok(seen.every((s) => s.address === "93.184.216.34"), "to the checked address");
  seen.length = 0;
  answers.push(302, 302, 302);
  assert.equal(
    await deliverCallback("https://hooks.example.com/d", {}, "c2", { ...options, attempts: 3 }),
    false,
  );
  assert.equal(seen.length, 3, "a 3xx is a failed delivery, retried, never followed");
  seen.length = 0;
  assert.equal(await deliverCallback("https://rebind.example.org/", {}, "c3", options), false);
  assert.equal(seen.length, 0, "refused before any request");
});

const SECRET = "0123456789abcdef0123456789abcdef-secret";

Deno.test("signCallback() is HMAC-SHA256 of '<t>.<body>', and verifyCallback() takes it within 5 minutes only", async () => {
  const body = '{"id":"c1","status":"success"}';
  const expected = createHmac("sha256", SECRET).update(`1700000000.${body}`).digest("hex");
  const header = await signCallback(SECRET, 1_700_000_000, body);
  assert.equal(header, `t=1700000000,v1=${expected}`);
  const at = (nowS: number, h: string | null = header, b = body, s = SECRET) =>
    verifyCallback(s, h, b, { nowS });
  assert.equal(await at(1_700_000_000 + 300), true);
  assert.equal(await at(1_700_000_000 - 300), true);
  assert.equal(await at(1_700_000_000 + 301), false, "too old: a replay");
  assert.equal(await at(1_700_000_000, header, body.replace("success", "error")), false);
  assert.equal(await at(1_700_000_000, header, body, SECRET + "x"), false);
  assert.equal(await at(1_700_000_000, header.replace("t=1700000000", "t=1700000001")), false);
  assert.equal(await at(1_700_000_000, null), false);
  assert.equal(await at(1_700_000_000, "t=1700000000,v1=zz"), false);
  // Two signatures while a secret rotates: either one will do.
  assert.equal(await at(1_700_000_000, `t=1700000000,v1=${"0".repeat(64)},v1=${expected}`), true);
});

Deno.test("deliverCallback() signs each attempt of the very body it sends, and sends none unsigned when it has a secret", async () => {
  const seen: { body: string; signature: string | null }[] = [];
  const answers = [500, 204];
  const post = (request: CallbackPost) => {
    seen.push({ body: request.body, signature: request.headers["gateway-signature"] ?? null });
    return Promise.resolve(answers.shift() ?? 500);
  };
  let now = 1_700_000_000_000;
  const delivered = await deliverCallback("https://hooks.example.com/d", { a: 1 }, "c1", {
    policy: POLICY,
    resolve,
    post,
    firstDelayMs: 1,
    secret: SECRET,
    clock: () => (now += 7_000),
  });
  assert.equal(delivered, true);
  assert.equal(seen.length, 2);
  for (const { body, signature } of seen) {
    const [, t, mac] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(signature!)!;
    assert.equal(mac, createHmac("sha256", SECRET).update(`${t}.${body}`).digest("hex"));
  }
  assert.notEqual(seen[0].signature, seen[1].signature, "each attempt signed at its own time");
  seen.length = 0;
  answers.push(204);
  await deliverCallback("https://hooks.example.com/d", {}, "c2", {
    policy: POLICY,
    resolve,
    post,
  });
  assert.equal(seen[0].signature, null, "no secret: unsigned");
});

Deno.test("deliverCallback() connects to the address that passed the check, never resolving the name again, and follows no redirect", async () => {
  const seen: { path: string; host: string | null; body: string; signature: string | null }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    const path = new URL(request.url).pathname;
    seen.push({
      path,
      host: request.headers.get("host"),
      body: await request.text(),
      signature: request.headers.get("gateway-signature"),
    });
    return path === "/moved"
      ? new Response(null, { status: 302, headers: { location: "/done" } })
      : new Response(null, { status: 204 });
  });
  let resolved = 0;
  // '.invalid' names never resolve (RFC 6761): only the checked address can be reached.
  const only: Resolve = (host) => {
    resolved++;
    return Promise.resolve(host === "hooks.invalid" ? ["127.0.0.1"] : []);
  };
  const options = {
    policy: { hosts: ["hooks.invalid"], allowPrivate: true, brokerHosts: [] },
    resolve: only,
    attempts: 1,
    secret: SECRET,
  };
  try {
    const base = `http://hooks.invalid:${server.addr.port}`;
    assert.equal(await deliverCallback(`${base}/done?x=1`, { a: 1 }, "c1", options), true);
    assert.equal(resolved, 1, "one resolution, the check's");
    assert.deepEqual(seen.map((s) => [s.path, s.host, s.body]), [
      ["/done", `hooks.invalid:${server.addr.port}`, '{"a":1}'],
    ]);
    assert.ok(await verifyCallback(SECRET, seen[0].signature, seen[0].body));
    assert.equal(await deliverCallback(`${base}/moved`, {}, "c2", options), false);
    assert.deepEqual(seen.map((s) => s.path), ["/done", "/moved"], "the 302 not followed");
  } finally {
    await server.shutdown();
  }
});
