import assert from "node:assert/strict";
import { timingSafeEqual } from "node:crypto";
import {
  COMPARE_DIGESTS,
  createAuth,
  generateToken,
  isSameOriginJson,
  isUsableToken,
  MAX_SESSIONS,
  SECURE_SESSION_COOKIE,
  SESSION_COOKIE,
  SESSION_MS,
} from "./auth.ts";

const TOKEN = "a-token-long-enough-0123456789";

Deno.test("generateToken() makes 256-bit URL-safe tokens, new each time", () => {
  const token = generateToken();
  assert.match(token, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(generateToken(), token);
  assert.ok(isUsableToken(token));
});

Deno.test("isUsableToken() refuses short tokens and characters a URL or cookie would change", () => {
  assert.ok(!isUsableToken("short"));
  assert.ok(!isUsableToken("has space in it, long enough"));
  assert.ok(!isUsableToken("semi;colon-breaks-cookies-0123"));
  assert.ok(isUsableToken(TOKEN));
});

/** Logs in with `?token=` and returns the session cookie's `name=value`. */
async function login(auth: Awaited<ReturnType<typeof createAuth>>, url = "http://127.0.0.1:8025/") {
  const access = await auth.check(new Request(`${url}?token=${TOKEN}`));
  assert.equal(access.kind, "login");
  return (access as { setCookie: string }).setCookie.split(";")[0];
}

Deno.test("createAuth() grants the bearer token and a session's cookie, and nothing else", async () => {
  const auth = await createAuth(TOKEN);
  const check = (init: RequestInit, path = "/") =>
    auth.check(new Request(`http://127.0.0.1:8025${path}`, init));
  const session = await login(auth);
  assert.deepEqual(await check({ headers: { authorization: `Bearer ${TOKEN}` } }), {
    kind: "granted",
    via: "bearer",
  });
  assert.deepEqual(await check({ headers: { cookie: `other=1; ${session}` } }), {
    kind: "granted",
    via: "cookie",
  });
  const wrong: Record<string, string>[] = [
    {},
    { authorization: `Bearer ${TOKEN}x` },
    { authorization: `Basic ${btoa(`x:${TOKEN}`)}` },
    // The token itself is no session: a cookie carries a session id only.
    { cookie: `${SESSION_COOKIE}=${TOKEN}` },
    { cookie: `${session}x` },
    // A wrong bearer is not saved by a right cookie: one credential, judged alone.
    { authorization: "Bearer nope", cookie: session },
  ];
  for (const headers of wrong) {
    assert.deepEqual(await check({ headers }), { kind: "denied" }, JSON.stringify(headers));
  }
});

Deno.test("createAuth() logs in from ?token= with a new random session, never the token, in the cookie", async () => {
  const auth = await createAuth(TOKEN);
  const access = await auth.check(new Request(`http://127.0.0.1:8025/?token=${TOKEN}&x=1`));
  assert.equal(access.kind, "login");
  const { location, setCookie } = access as { location: string; setCookie: string };
  assert.equal(location, "/?x=1");
  assert.match(
    setCookie,
    /^dashboard_session=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/$/,
  );
  assert.ok(!setCookie.includes(TOKEN), "the cookie does not reveal the token");
  assert.notEqual(await login(auth), await login(auth), "each login its own session");
  assert.equal(auth.sessions, 3);
  const wrong = await auth.check(new Request(`http://127.0.0.1:8025/?token=nope`));
  assert.deepEqual(wrong, { kind: "denied" });
  const post = await auth.check(
    new Request(`http://127.0.0.1:8025/api/replay?token=${TOKEN}`, { method: "POST" }),
  );
  assert.deepEqual(post, { kind: "denied" }, "only a page visit logs in");
});

Deno.test("createAuth() never redirects a login to another host (//evil.example)", async () => {
  const auth = await createAuth(TOKEN);
  for (const path of ["//evil.example/", "///evil.example/x", "/\\/evil.example"]) {
    const access = await auth.check(new Request(`http://127.0.0.1:8025${path}?token=${TOKEN}`));
    assert.equal(access.kind, "login", path);
    const { location } = access as { location: string };
    assert.ok(location.startsWith("/") && !location.startsWith("//"), `${path} -> ${location}`);
    assert.equal(new URL(location, "http://127.0.0.1:8025").host, "127.0.0.1:8025");
  }
});

Deno.test("createAuth() takes any of several cookies of its name, so a tossed junk cookie locks nobody out", async () => {
  const auth = await createAuth(TOKEN);
  const session = await login(auth);
  const request = (cookie: string) =>
    auth.check(new Request("http://127.0.0.1:8025/api/state", { headers: { cookie } }));
  // A page on another port of the same host name set a more specific, first-sent junk cookie.
  const tossed = await request(`${SESSION_COOKIE}=junk; ${session}`);
  assert.deepEqual(tossed, { kind: "granted", via: "cookie" });
  assert.deepEqual(await request(`${SESSION_COOKIE}=junk; ${SESSION_COOKIE}=more`), {
    kind: "denied",
  });
});

Deno.test("createAuth() ends sessions after SESSION_MS, and keeps at most MAX_SESSIONS", async () => {
  let now = 0;
  const auth = await createAuth(TOKEN, { now: () => now });
  const first = await login(auth);
  const granted = (cookie: string) =>
    auth.check(new Request("http://127.0.0.1:8025/", { headers: { cookie } })).then((a) =>
      a.kind === "granted"
    );
  assert.ok(await granted(first));
  now = SESSION_MS;
  assert.ok(!await granted(first), "expired");
  now = 0;
  const sessions = [];
  for (let i = 0; i < MAX_SESSIONS + 5; i++) sessions.push(await login(auth));
  assert.ok(auth.sessions <= MAX_SESSIONS, `${auth.sessions} sessions`);
  assert.ok(!await granted(sessions[0]), "the oldest went");
  assert.ok(await granted(sessions.at(-1)!));
});

Deno.test("createAuth() behind TLS: a Secure __Host- cookie; on loopback, logins only at dashboard.localhost", async () => {
  const tls = await createAuth(TOKEN, { publicOrigin: "https://dash.example.com" });
  const access = await tls.check(new Request(`http://127.0.0.1:8025/?token=${TOKEN}`));
  assert.equal(access.kind, "login", "behind a proxy the Host may be anything");
  const { setCookie } = access as { setCookie: string };
  assert.match(
    setCookie,
    new RegExp(`^${SECURE_SESSION_COOKIE}=[^;]+; HttpOnly; SameSite=Strict; Path=/; Secure$`),
  );
  const session = setCookie.split(";")[0];
  const check = (cookie: string) =>
    tls.check(new Request("https://dash.example.com/", { headers: { cookie } }));
  assert.deepEqual(await check(session), { kind: "granted", via: "cookie" });
  assert.deepEqual(await check(session.replace(SECURE_SESSION_COOKIE, SESSION_COOKIE)), {
    kind: "denied",
  });

  const local = await createAuth(TOKEN, {
    publicOrigin: "http://dashboard.localhost:8025",
    loginAtPublicOriginOnly: true,
  });
  for (const host of ["127.0.0.1:8025", "localhost:8025"]) {
    const elsewhere = await local.check(
      new Request(`http://${host}/x?token=${TOKEN}`, { headers: { host } }),
    );
    assert.deepEqual(elsewhere, {
      kind: "elsewhere",
      location: `http://dashboard.localhost:8025/x?token=${TOKEN}`,
    });
  }
  const wrong = await local.check(
    new Request("http://127.0.0.1:8025/?token=wrong-token-0123456789"),
  );
  assert.deepEqual(wrong, { kind: "denied" }, "a wrong token is sent nowhere");
  const own = await local.check(
    new Request(`http://dashboard.localhost:8025/?token=${TOKEN}`, {
      headers: { host: "dashboard.localhost:8025" },
    }),
  );
  assert.equal(own.kind, "login");
  assert.equal(local.sessions, 1);
});

Deno.test("createAuth() compares the token as two SHA-256 digests with timingSafeEqual", async () => {
  assert.equal(COMPARE_DIGESTS, timingSafeEqual, "the default comparison is node:crypto's");
  const calls: [number, number][] = [];
  const auth = await createAuth(TOKEN, {
    compare(a, b) {
      calls.push([a.byteLength, b.byteLength]);
      return COMPARE_DIGESTS(a, b);
    },
  });
  const bearer = (token: string) =>
    auth.check(
      new Request("http://127.0.0.1:8025/", { headers: { authorization: `Bearer ${token}` } }),
    );
  assert.equal((await bearer(TOKEN)).kind, "granted");
  assert.equal((await bearer("x")).kind, "denied");
  assert.equal((await bearer(TOKEN + "x".repeat(500))).kind, "denied");
  await auth.check(new Request(`http://127.0.0.1:8025/?token=${TOKEN.slice(0, 3)}`));
  assert.deepEqual(
    calls,
    [[32, 32], [32, 32], [32, 32], [32, 32]],
    "every guess, whatever its length",
  );
  // The comparison decides: one that says yes to anything grants a wrong token.
  const lax = await createAuth(TOKEN, { compare: () => true });
  assert.equal(
    (await lax.check(
      new Request("http://127.0.0.1:8025/", { headers: { authorization: "Bearer wrong" } }),
    )).kind,
    "granted",
  );
});

Deno.test("isSameOriginJson() takes JSON from the page's own origin only", () => {
  const request = (headers: Record<string, string>) =>
    new Request("http://127.0.0.1:8025/api/replay", { method: "POST", headers });
  const json = { "content-type": "application/json", host: "127.0.0.1:8025" };
  assert.ok(isSameOriginJson(request({ ...json, origin: "http://127.0.0.1:8025" })));
  assert.ok(isSameOriginJson(request({ ...json, "sec-fetch-site": "same-origin" })));
  assert.ok(!isSameOriginJson(request({ ...json, origin: "http://evil.example" })));
  assert.ok(!isSameOriginJson(request({ ...json, "sec-fetch-site": "cross-site" })));
  assert.ok(!isSameOriginJson(request(json)), "neither Origin nor Sec-Fetch-Site");
  assert.ok(
    !isSameOriginJson(request({
      "content-type": "application/x-www-form-urlencoded",
      host: "127.0.0.1:8025",
      origin: "http://127.0.0.1:8025",
    })),
    "a form, which a cross-site page could also post",
  );
});

Deno.test("isSameOriginJson() behind a TLS proxy compares Origin with the public origin", () => {
  const request = (headers: Record<string, string>) =>
    new Request("http://127.0.0.1:8025/api/replay", { method: "POST", headers });
  const json = { "content-type": "application/json", host: "127.0.0.1:8025" };
  const origin = "https://dash.example.com";
  assert.ok(isSameOriginJson(request({ ...json, origin }), origin));
  assert.ok(!isSameOriginJson(request({ ...json, origin: "http://127.0.0.1:8025" }), origin));
  assert.ok(!isSameOriginJson(request({ ...json, origin: "http://dash.example.com" }), origin));
  assert.ok(
    !isSameOriginJson(request({ ...json, origin: "https://dash.example.com.evil" }), origin),
  );
});
