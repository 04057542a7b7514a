import assert from "node:assert/strict";
import {
  clientOf,
  formatIp,
  inCidrs,
  parseCidrs,
  parseForwarded,
  parseIp,
  parseNodeAddress,
} from "./client_address.ts";

const PROXIES = parseCidrs("10.0.0.0/8, 2001:db8:ffff::/48, 192.0.2.7");

function headers(init: Record<string, string>): Headers {
  return new Headers(init);
}

Deno.test("parseIp() and formatIp() read IPv4, IPv6 and mapped forms, and write them canonically", () => {
  for (
    const [text, canonical] of [
      ["192.0.2.1", "192.0.2.1"],
      ["::ffff:192.0.2.1", "192.0.2.1"],
      ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["::1", "::1"],
      ["::", "::"],
      ["fe80::1%eth0", "fe80::1"],
      ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
    ]
  ) assert.equal(formatIp(parseIp(text)!), canonical, text);
  for (
    const bad of [
      "1.2.3",
      "01.2.3.4",
      "256.1.1.1",
      "1:2:3:4:5:6:7:8:9",
      "1::2::3",
      "g::1",
      ":1",
      "example.com",
      "",
      "1".repeat(100),
    ]
  ) assert.equal(parseIp(bad), undefined, bad);
});

Deno.test("parseCidrs() reads blocks and hosts, and refuses what is neither", () => {
  const inList = (text: string) => inCidrs(parseIp(text)!, PROXIES);
  assert.ok(inList("10.200.3.4"));
  assert.ok(inList("::ffff:10.0.0.1"), "a mapped IPv4 peer is the same address");
  assert.ok(inList("192.0.2.7"));
  assert.ok(!inList("192.0.2.8"));
  assert.ok(inList("2001:db8:ffff:1::9"));
  assert.ok(!inList("2001:db8:fffe::9"));
  assert.ok(!inList("11.0.0.1"));
  assert.ok(inCidrs(parseIp("203.0.113.9")!, parseCidrs("0.0.0.0/0")));
  assert.ok(!inCidrs(parseIp("203.0.113.9")!, parseCidrs("")), "none by default");
  for (const bad of ["10.0.0.0/33", "::/129", "proxy.example.com", "10.0.0.0/8/9", "10.0.0.0/x"]) {
    assert.throws(() => parseCidrs(bad), TypeError, bad);
  }
});

Deno.test("parseNodeAddress() and parseForwarded() read what proxies write, and nothing else", () => {
  assert.equal(formatIp(parseNodeAddress("192.0.2.1:4711")!), "192.0.2.1");
  assert.equal(formatIp(parseNodeAddress('"[2001:db8::1]:4711"')!), "2001:db8::1");
  assert.equal(formatIp(parseNodeAddress(" 2001:db8::2 ")!), "2001:db8::2");
  for (const bad of ["unknown", "_hidden", "", "[::1", "1.2.3.4:x"]) {
    assert.equal(parseNodeAddress(bad), undefined, bad);
  }
  const elements = parseForwarded(
    'for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8::7]:1"',
  );
  assert.deepEqual(elements.map((e) => e.get("for")), ["192.0.2.60", "[2001:db8::7]:1"]);
  assert.equal(elements[0].get("proto"), "http");
  // A quoted comma does not split an element.
  assert.equal(parseForwarded('for="a,b";proto=https').length, 1);
});

Deno.test("clientOf() ignores a forged X-Forwarded-For, Forwarded and X-Forwarded-Proto from an untrusted peer", () => {
  const forged = headers({
    "x-forwarded-for": "198.51.100.1",
    "x-forwarded-proto": "https",
    forwarded: "for=198.51.100.2;proto=https",
  });
  assert.deepEqual(clientOf("203.0.113.9", forged, { trusted: PROXIES }), {
    address: "203.0.113.9",
    limitKey: "203.0.113.9",
    proto: "http",
  });
  assert.equal(clientOf("203.0.113.9", forged).address, "203.0.113.9", "no proxy trusted");
  assert.equal(
    clientOf("203.0.113.9", forged, { trusted: PROXIES, header: "forwarded" }).address,
    "203.0.113.9",
  );
});

Deno.test("clientOf() takes the client a trusted proxy names: the right-most address that is no proxy", () => {
  const from = (value: string, peer = "10.0.0.5") =>
    clientOf(peer, headers({ "x-forwarded-for": value, "x-forwarded-proto": "http, https" }), {
      trusted: PROXIES,
    });
  assert.deepEqual(from("203.0.113.9"), {
    address: "203.0.113.9",
    limitKey: "203.0.113.9",
    proto: "https",
  });
  // The client wrote the left entries itself: they are forged, and skipped.
  assert.equal(from("6.6.6.6, 198.51.100.1, 203.0.113.9, 10.0.0.7").address, "203.0.113.9");
  assert.equal(from("6.6.6.6,203.0.113.9:5555, 192.0.2.7").address, "203.0.113.9");
  // Every hop a proxy: the left-most is the client.
  assert.equal(from("10.0.0.9, 10.0.0.8").address, "10.0.0.9");
  // What cannot be read stops the walk at the proxy that passed it on.
  assert.equal(from("6.6.6.6, nonsense").address, "10.0.0.5");
  assert.equal(from("6.6.6.6, nonsense, 10.0.0.8").address, "10.0.0.8");
  // The peer given as a mapped IPv6 address is the same proxy.
  assert.equal(from("203.0.113.9", "::ffff:10.0.0.5").address, "203.0.113.9");
  // No header: the proxy itself.
  assert.equal(clientOf("10.0.0.5", headers({}), { trusted: PROXIES }).address, "10.0.0.5");
});

Deno.test("clientOf() reads only the header the proxies are said to write", () => {
  const both = headers({
    "x-forwarded-for": "198.51.100.1",
    forwarded: 'for=6.6.6.6;proto=http, for="[2001:db8:1:2:3::7]:4711";proto=https',
  });
  assert.deepEqual(clientOf("10.0.0.5", both, { trusted: PROXIES, header: "forwarded" }), {
    address: "2001:db8:1:2:3::7",
    limitKey: "2001:db8:1:2::/64",
    proto: "https",
  });
  assert.equal(clientOf("10.0.0.5", both, { trusted: PROXIES }).address, "198.51.100.1");
  // A Forwarded header an attacker sent through a proxy that writes X-Forwarded-For.
  const sneaked = headers({ forwarded: "for=6.6.6.6", "x-forwarded-for": "203.0.113.9" });
  assert.equal(clientOf("10.0.0.5", sneaked, { trusted: PROXIES }).address, "203.0.113.9");
});

Deno.test("clientOf() counts an IPv6 client under its /64, so one host cannot walk its block", () => {
  const a = clientOf("2001:db8:1:2::1", headers({}));
  const b = clientOf("2001:db8:1:2:ffff::9", headers({}));
  assert.equal(a.limitKey, b.limitKey);
  assert.notEqual(a.address, b.address);
  assert.notEqual(clientOf("2001:db8:1:3::1", headers({})).limitKey, a.limitKey);
});
