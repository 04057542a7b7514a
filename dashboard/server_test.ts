import assert from "node:assert/strict";
import { createAuth } from "./auth.ts";
import { DashboardState } from "./dashboard_state.ts";
import { dashboardHandler, readPageFiles } from "./server.ts";
import { SseHub } from "./sse.ts";

const TOKEN = "server-test-token-0123456789";

const ORIGIN = "http://dashboard.localhost:8025";

async function setup(options: { maxStreams?: number } = {}) {
  const hub = new SseHub({ maxStreams: options.maxStreams });
  const state = new DashboardState({
    functions: new Map([["task_a", { queue: "queue_a", user: "task_a" }]]),
    broker: "amqp://dashboard:***@localhost:5672",
    hub,
  });
  const handle = dashboardHandler({
    auth: await createAuth(TOKEN, { publicOrigin: ORIGIN, loginAtPublicOriginOnly: true }),
    state,
    hub,
    page: await readPageFiles(),
    loopback: true,
    publicOrigin: ORIGIN,
  });
  const request = (path: string, init: RequestInit & { host?: string } = {}) => {
    const headers = new Headers(init.headers);
    const host = init.host ?? "dashboard.localhost:8025";
    headers.set("host", host);
    return handle(new Request(`http://${host}${path}`, { ...init, headers }));
  };
  const login = await request(`/?token=${TOKEN}`);
  await login.body?.cancel();
  const session = login.headers.get("set-cookie")!.split(";")[0];
  return {
    request,
    cookie: { cookie: session },
    close() {
      state.close();
      hub.close();
    },
  };
}

Deno.test("the dashboard answers 401 without the token, and logs a browser in with it", async () => {
  const t = await setup();
  try {
    const denied = await t.request("/");
    assert.equal(denied.status, 401);
    assert.equal(denied.headers.get("www-authenticate"), 'Bearer realm="dashboard"');
    assert.match(await denied.text(), /needs its token/);
    const login = await t.request(`/?token=${TOKEN}`);
    assert.equal(login.status, 303);
    assert.equal(login.headers.get("location"), "/");
    assert.match(
      login.headers.get("set-cookie")!,
      /^dashboard_session=.*HttpOnly; SameSite=Strict/,
    );
    // A login at another loopback name goes to the dashboard's own host name first.
    const elsewhere = await t.request(`/?token=${TOKEN}`, { host: "127.0.0.1:8025" });
    assert.equal(elsewhere.status, 303);
    assert.equal(elsewhere.headers.get("location"), `${ORIGIN}/?token=${TOKEN}`);
    assert.equal(elsewhere.headers.get("set-cookie"), null, "no cookie for 127.0.0.1");
    const page = await t.request("/", { headers: t.cookie });
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<script src="\/app.js" defer><\/script>/);
    const csp = page.headers.get("content-security-policy")!;
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(page.headers.get("referrer-policy"), "no-referrer");
  } finally {
    t.close();
  }
});

Deno.test("the dashboard refuses other host names, unknown paths and wrong methods", async () => {
  const t = await setup();
  try {
    const rebound = await t.request("/", { headers: t.cookie, host: "evil.example:8025" });
    assert.equal(rebound.status, 421, "a DNS-rebound name reaches nothing");
    await rebound.body?.cancel();
    for (const host of ["127.0.0.1:8025", "localhost:8025", "[::1]:8025"]) {
      const bearer = await t.request("/api/state", {
        host,
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      assert.equal(bearer.status, 200, `programs may use ${host}`);
      await bearer.body?.cancel();
    }
    const missing = await t.request("/nothing", { headers: t.cookie });
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    const wrong = await t.request("/api/state", { method: "DELETE", headers: t.cookie });
    assert.equal(wrong.status, 405);
    await wrong.body?.cancel();
  } finally {
    t.close();
  }
});

Deno.test("POST /api/replay takes JSON from the page itself, or a bearer token", async () => {
  const t = await setup();
  try {
    const body = JSON.stringify({ function: "task_a" });
    const crossSite = await t.request("/api/replay", {
      method: "POST",
      body,
      headers: { ...t.cookie, "content-type": "application/json", origin: "http://evil.example" },
    });
    assert.equal(crossSite.status, 403);
    assert.match((await crossSite.json()).error, /another page/);
    const form = await t.request("/api/replay", {
      method: "POST",
      body: "function=task_a",
      headers: {
        ...t.cookie,
        "content-type": "application/x-www-form-urlencoded",
        origin: ORIGIN,
      },
    });
    assert.equal(form.status, 403);
    await form.body?.cancel();
    // Allowed through, then refused for what it asks: no broker here, no such function.
    const own = await t.request("/api/replay", {
      method: "POST",
      body,
      headers: { ...t.cookie, "content-type": "application/json", origin: ORIGIN },
    });
    assert.equal(own.status, 400);
    assert.match((await own.json()).error, /no broker is connected/);
    const bearer = await t.request("/api/replay", {
      method: "POST",
      body: JSON.stringify({ function: "task_z" }),
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(bearer.status, 400);
    assert.match((await bearer.json()).error, /'task_z': no such function/);
  } finally {
    t.close();
  }
});

Deno.test("GET /api/events starts with the state and the recent events", async () => {
  const t = await setup();
  try {
    const response = await t.request("/api/events", { headers: t.cookie });
    assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("event: tasks")) text += (await reader.read()).value;
    const state = JSON.parse(text.match(/^event: state\ndata: (.*)$/m)![1]);
    assert.equal(state.mode, "connecting");
    assert.deepEqual(state.functions.map((f: { function: string }) => f.function), ["task_a"]);
    await reader.cancel();
  } finally {
    t.close();
  }
});

Deno.test("GET /api/events answers 503 past the cap on live streams", async () => {
  const t = await setup({ maxStreams: 2 });
  try {
    const open = [];
    for (let i = 0; i < 2; i++) {
      const response = await t.request("/api/events", { headers: t.cookie });
      assert.equal(response.status, 200);
      open.push(response);
    }
    const refused = await t.request("/api/events", { headers: t.cookie });
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get("content-security-policy")?.includes("frame-ancestors"), true);
    await refused.body?.cancel();
    for (const response of open) await response.body?.cancel();
  } finally {
    t.close();
  }
});

Deno.test("POST /api/replay behind a TLS proxy takes the public origin, with the Secure cookie", async () => {
  const publicOrigin = "https://dash.example.com";
  const hub = new SseHub();
  const state = new DashboardState({
    functions: new Map([["task_a", { queue: "queue_a", user: "task_a" }]]),
    broker: "amqp://dashboard:***@localhost:5672",
    hub,
  });
  const handle = dashboardHandler({
    auth: await createAuth(TOKEN, { publicOrigin }),
    state,
    hub,
    page: await readPageFiles(),
    loopback: true,
    publicOrigin,
  });
  try {
    // The proxy forwards the public Host to the loopback listener.
    const request = (path: string, headers: Record<string, string>, init: RequestInit = {}) =>
      handle(
        new Request(`http://127.0.0.1:8025${path}`, {
          ...init,
          headers: { host: "dash.example.com", ...headers },
        }),
      );
    const login = await request(`/?token=${TOKEN}`, {});
    assert.equal(login.status, 303);
    const setCookie = login.headers.get("set-cookie")!;
    assert.match(setCookie, /^__Host-dashboard_session=.*; Secure$/);
    const cookie = setCookie.split(";")[0];
    const replay = (origin: string) =>
      request("/api/replay", { cookie, origin, "content-type": "application/json" }, {
        method: "POST",
        body: JSON.stringify({ function: "task_a" }),
      });
    const own = await replay(publicOrigin);
    assert.equal(own.status, 400, "let through, then refused for what it asks");
    assert.match((await own.json()).error, /no broker is connected/);
    const plain = await replay("http://dash.example.com");
    assert.equal(plain.status, 403);
    await plain.body?.cancel();
  } finally {
    state.close();
    hub.close();
  }
});
