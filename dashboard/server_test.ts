import assert from "node:assert/strict";
import { createAuth, TOKEN_COOKIE } from "./auth.ts";
import { DashboardState } from "./dashboard_state.ts";
import { dashboardHandler, readPageFiles } from "./server.ts";
import { SseHub } from "./sse.ts";

const TOKEN = "server-test-token-0123456789";

async function setup() {
  const hub = new SseHub();
  const state = new DashboardState({
    functions: new Map([["task_a", { queue: "queue_a", user: "task_a" }]]),
    broker: "amqp://dashboard:***@localhost:5672",
    hub,
  });
  const handle = dashboardHandler({
    auth: await createAuth(TOKEN),
    state,
    hub,
    page: await readPageFiles(),
    loopback: true,
  });
  const request = (path: string, init: RequestInit & { host?: string } = {}) => {
    const headers = new Headers(init.headers);
    headers.set("host", init.host ?? "127.0.0.1:8025");
    return handle(new Request(`http://127.0.0.1:8025${path}`, { ...init, headers }));
  };
  return {
    request,
    cookie: { cookie: `${TOKEN_COOKIE}=${TOKEN}` },
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
    assert.match(login.headers.get("set-cookie")!, /HttpOnly; SameSite=Strict/);
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
        origin: "http://127.0.0.1:8025",
      },
    });
    assert.equal(form.status, 403);
    await form.body?.cancel();
    // Allowed through, then refused for what it asks: no broker here, no such function.
    const own = await t.request("/api/replay", {
      method: "POST",
      body,
      headers: { ...t.cookie, "content-type": "application/json", origin: "http://127.0.0.1:8025" },
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
