import assert from "node:assert/strict";
import {
  createAuth,
  generateToken,
  isSameOriginJson,
  isUsableToken,
  TOKEN_COOKIE,
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

Deno.test("createAuth() grants the bearer token and the cookie, and nothing else", async () => {
  const auth = await createAuth(TOKEN);
  const check = (init: RequestInit, path = "/") =>
    auth.check(new Request(`http://127.0.0.1:8025${path}`, init));
  assert.deepEqual(await check({ headers: { authorization: `Bearer ${TOKEN}` } }), {
    kind: "granted",
    via: "bearer",
  });
  assert.deepEqual(await check({ headers: { cookie: `other=1; ${TOKEN_COOKIE}=${TOKEN}` } }), {
    kind: "granted",
    via: "cookie",
  });
  const wrong: Record<string, string>[] = [
    {},
    { authorization: `Bearer ${TOKEN}x` },
    { authorization: `Basic ${btoa(`x:${TOKEN}`)}` },
    { cookie: `${TOKEN_COOKIE}=${TOKEN.slice(1)}` },
    // A wrong bearer is not saved by a right cookie: one credential, judged alone.
    { authorization: "Bearer nope", cookie: `${TOKEN_COOKIE}=${TOKEN}` },
  ];
  for (const headers of wrong) {
    assert.deepEqual(await check({ headers }), { kind: "denied" }, JSON.stringify(headers));
  }
});

Deno.test("createAuth() logs in from ?token= and redirects to the page without it", async () => {
  const auth = await createAuth(TOKEN);
  const login = await auth.check(new Request(`http://127.0.0.1:8025/?token=${TOKEN}&x=1`));
  assert.deepEqual(login, { kind: "login", location: "/?x=1" });
  assert.equal(auth.cookie, `${TOKEN_COOKIE}=${TOKEN}; HttpOnly; SameSite=Strict; Path=/`);
  const wrong = await auth.check(new Request(`http://127.0.0.1:8025/?token=nope`));
  assert.deepEqual(wrong, { kind: "denied" });
  const post = await auth.check(
    new Request(`http://127.0.0.1:8025/api/replay?token=${TOKEN}`, { method: "POST" }),
  );
  assert.deepEqual(post, { kind: "denied" }, "only a page visit logs in");
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
