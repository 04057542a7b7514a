/**
 * The gateway's HTTP routes, over a {@linkcode GatewayBackend} (the client
 * library): a function call, sync or async, an asynchronous call's status
 * and cancellation, events, health, metrics and the OpenAPI description.
 * Every refusal is JSON naming what went wrong and how to fix it. API keys
 * are checked before anything else is read, then the key's rate and
 * in-flight limits, then the body (size, read time, JSON depth).
 * Asynchronous calls and Idempotency-Keys live in a `CallStore`: this
 * process's memory (`call_records.ts`), or the record every replica
 * shares (`shared_calls.ts`), which `deno task gateway` uses.
 *
 * @module
 */

import type {
  CallOutcome,
  CancelResult,
  EmitOptions,
  FunctionRoute,
  Payload,
  SubmitOptions,
  TaskCallOptions,
} from "../client/mod.ts";
import { BrokerUnavailableError, PublishForbiddenError } from "../client/mod.ts";
import {
  CallbackRefused,
  checkCallbackUrl,
  deliverCallback,
  type DeliverOptions,
} from "./callbacks.ts";
import {
  type CallStore,
  type IdempotencyClaim,
  LocalCalls,
  type StoredCall,
  type StoredResponse,
  StoreUnavailableError,
} from "./call_records.ts";
import { type KeyRecord, type KeyRing, mayCall, mayEmit } from "./keys.ts";
import { BodyError, FailureLimit, jsonDepthOver, readBody, TokenBucket } from "./limits.ts";
import { openApiOf } from "./openapi.ts";
import { GatewayMetrics } from "./metrics.ts";

/**
 * What the gateway needs of the system: the part of the client library's
 * `TaskClient` it uses, so that a `TaskClient` is one as it is and unit
 * tests give a fake.
 */
export interface GatewayBackend {
  readonly functions: ReadonlyMap<string, FunctionRoute>;
  request(fn: string, payload?: Payload, options?: TaskCallOptions): Promise<CallOutcome>;
  submit(fn: string, payload?: Payload, options?: SubmitOptions): Promise<string>;
  result(id: string, options?: { timeoutMs?: number }): Promise<CallOutcome>;
  cancel(id: string, options?: { waitMs?: number; until?: number }): Promise<CancelResult>;
  emit(type: string, data?: Record<string, unknown>, options?: EmitOptions): Promise<string>;
  waitForWorkers(fns: readonly string[], options: { timeoutMs: number }): Promise<unknown>;
}

/** Options of {@linkcode createGateway}. */
export interface GatewayOptions {
  backend: GatewayBackend;
  keys: KeyRing;
  /** @default {1048576} */
  maxBodyBytes?: number;
  /** @default {32} */
  maxJsonDepth?: number;
  /** How long a request body may take to arrive. @default {10000} */
  bodyDeadlineMs?: number;
  /** A call's timeout unless `?timeout_ms=` says otherwise. @default {30000} */
  timeoutMs?: number;
  /** The longest `?timeout_ms=` accepted. @default {900000} */
  maxTimeoutMs?: number;
  /** How long a worker check is believed. @default {2000} */
  workerCheckMs?: number;
  /** Seconds told in Retry-After when the broker or workers are away. @default {5} */
  unavailableRetryS?: number;
  /** Time between keep-alive comments of an event stream. @default {15000} */
  keepAliveMs?: number;
  /** Whether the broker connection is up now. @default {() => true} */
  connected?: () => boolean;
  /**
   * Where asynchronous calls and Idempotency-Keys are kept: `deno task
   * gateway` gives the stream every replica shares (`shared_calls.ts`).
   * @default {a LocalCalls over `backend`: this process only}
   */
  calls?: CallStore;
  /**
   * Origins whose browser pages may call the gateway (CORS), such as
   * `https://app.example.com`; none by default, so browsers refuse.
   */
  corsOrigins?: readonly string[];
  /** Where callbacks may go, and how they are made; without it no callback is taken. */
  callbacks?: Omit<DeliverOptions, "log">;
  /**
   * Answers of 401 or 403 a client address may get before it gets 429
   * for a while (one back every 5 s); 0: no limit. @default {20}
   */
  maxAuthFailures?: number;
  /** The count of those failures, in place of one of `maxAuthFailures`. */
  failureLimit?: FailureLimit;
  /** One line per request (never a key). */
  log?: (line: string) => void;
  now?: () => number;
}

/** Who sent a request, as the front tells it (client_address.ts). */
export interface RequestClient {
  address: string;
  /** What per-address limits count under. @default {address} */
  limitKey?: string;
  proto?: string;
}

/** A gateway: its handler, its metrics and its store of calls. */
export interface Gateway {
  handler: (request: Request, client?: RequestClient) => Promise<Response>;
  metrics: GatewayMetrics;
  calls: CallStore;
}

const JSON_HEADERS = { "content-type": "application/json" };

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { ...JSON_HEADERS, ...headers } });
}

/** A refusal: `error` a stable code, `message` what went wrong and how to fix it. */
export function refusal(
  status: number,
  error: string,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return json(status, { error, message }, headers);
}

const FUNCTION_PATH = /^\/functions\/([^/]{1,128})$/;
const CALL_PATH = /^\/calls\/([^/]{1,128})$/;
const CALL_EVENTS_PATH = /^\/calls\/([^/]{1,128})\/events$/;

/** Outcomes of a call made, kept for a repeat of its Idempotency-Key. */
const STORED_STATUSES = new Set([200, 202, 409, 500, 504]);

async function toStored(response: Response): Promise<StoredResponse> {
  return { status: response.status, headers: [...response.headers], body: await response.text() };
}

function fromStored(stored: StoredResponse, replayed: boolean): Response {
  const headers = new Headers(stored.headers);
  if (replayed) headers.set("idempotent-replayed", "true");
  return new Response(stored.body, { status: stored.status, headers });
}

/** One server-sent event of `name` with `data` as JSON. */
export function sseEvent(name: string, data: unknown): string {
  // JSON.stringify escapes line breaks, so the data is one line.
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}
const NAME = /^[a-z][a-z0-9_]{0,62}$/;

/** The gateway over `options.backend`. */
export function createGateway(options: GatewayOptions): Gateway {
  const {
    backend,
    keys,
    maxBodyBytes = 1024 * 1024,
    maxJsonDepth = 32,
    bodyDeadlineMs = 10_000,
    timeoutMs = 30_000,
    maxTimeoutMs = 900_000,
    workerCheckMs = 2_000,
    unavailableRetryS = 5,
    connected = () => true,
    keepAliveMs = 15_000,
    log = () => {},
    now = () => performance.now(),
  } = options;
  const calls: CallStore = options.calls ?? new LocalCalls(backend);
  if (options.callbacks) {
    const deliver = { ...options.callbacks, log };
    calls.onCallback((call) =>
      deliverCallback(call.callback!, callBody(call), call.id, deliver).catch((error) =>
        log(`gateway: callback for ${call.id} failed: ${(error as Error)?.name}`)
      )
    );
  }
  const callbackPolicy = options.callbacks?.policy ??
    { hosts: [], allowPrivate: false, brokerHosts: [] };
  const metrics = new GatewayMetrics();
  const failures = options.failureLimit ??
    new FailureLimit({ burst: options.maxAuthFailures ?? 20 });
  const buckets = new Map<string, TokenBucket>();
  const inFlight = new Map<string, number>();
  const workersSeen = new Map<string, { at: number; ok: boolean }>();

  const unavailable = (what: string, why = "the broker is unavailable") =>
    refusal(
      503,
      "unavailable",
      `Cannot ${what} as ${why}: retry after ${unavailableRetryS} s`,
      { "retry-after": String(unavailableRetryS) },
    );
  const storeUnavailable = (what: string) =>
    unavailable(
      what,
      `the gateway's record of calls is unavailable (${
        calls.unavailable() ?? "it did not answer"
      })`,
    );

  async function authenticate(request: Request): Promise<KeyRecord | Response> {
    const header = request.headers.get("authorization");
    if (header === null) {
      return refusal(
        401,
        "unauthorized",
        "Cannot serve the request without an API key: send 'Authorization: Bearer <key>' (deno task gateway keys add makes one)",
        { "www-authenticate": "Bearer" },
      );
    }
    const match = /^Bearer ([\x21-\x7e]{1,256})$/i.exec(header);
    const record = match ? await keys.verify(match[1]) : undefined;
    if (!record) {
      return refusal(
        401,
        "unauthorized",
        "Cannot serve the request as its API key is not one of this gateway's: check the key, or make one with 'deno task gateway keys add'",
        { "www-authenticate": 'Bearer error="invalid_token"' },
      );
    }
    return record;
  }

  function admit(key: KeyRecord): Response | undefined {
    let bucket = buckets.get(key.id);
    if (!bucket) buckets.set(key.id, bucket = new TokenBucket(key.rate, key.burst, now));
    const wait = bucket.take();
    if (wait > 0) {
      return refusal(
        429,
        "rate_limited",
        `Cannot take more than ${key.rate} requests a second (bursts of ${key.burst}) from this key: retry after ${wait} s, or ask for a key with a higher --rate`,
        { "retry-after": String(wait) },
      );
    }
    return undefined;
  }

  function enter(key: KeyRecord): Response | (() => void) {
    const running = inFlight.get(key.id) ?? 0;
    if (running >= key.inFlight) {
      return refusal(
        429,
        "too_many_in_flight",
        `Cannot start a call as this key has ${running} running, its limit: retry after 1 s, once some end`,
        { "retry-after": "1" },
      );
    }
    inFlight.set(key.id, running + 1);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const count = (inFlight.get(key.id) ?? 1) - 1;
      if (count === 0) inFlight.delete(key.id);
      else inFlight.set(key.id, count);
    };
  }

  async function readJson(request: Request): Promise<unknown | Response> {
    let bytes: Uint8Array;
    try {
      bytes = await readBody(request, maxBodyBytes, bodyDeadlineMs);
    } catch (error) {
      if (error instanceof BodyError) {
        return refusal(
          error.status,
          error.status === 413 ? "too_large" : "too_slow",
          error.message,
        );
      }
      return refusal(400, "bad_body", "Cannot read the request body: send it whole");
    }
    if (bytes.byteLength === 0) return undefined;
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      return refusal(400, "bad_json", "Cannot read the body as it is not UTF-8: send JSON");
    }
    if (jsonDepthOver(text, maxJsonDepth)) {
      return refusal(
        400,
        "too_deep",
        `Cannot accept JSON nested deeper than ${maxJsonDepth} levels: flatten the payload`,
      );
    }
    try {
      return JSON.parse(text);
    } catch (error) {
      return refusal(
        400,
        "bad_json",
        `Cannot parse the body as JSON (${(error as Error).message}): send a JSON object`,
      );
    }
  }

  async function workersUp(fn: string): Promise<boolean> {
    const seen = workersSeen.get(fn);
    const at = now();
    if (seen && at - seen.at < workerCheckMs) return seen.ok;
    let ok = true;
    try {
      await backend.waitForWorkers([fn], { timeoutMs: 0 });
    } catch (error) {
      if (error instanceof BrokerUnavailableError) throw error;
      ok = false;
    }
    workersSeen.set(fn, { at, ok });
    return ok;
  }

  function timeoutOf(url: URL): number | Response {
    const given = url.searchParams.get("timeout_ms");
    if (given === null) return timeoutMs;
    const value = Number(given);
    if (!/^\d{1,9}$/.test(given) || value < 1 || value > maxTimeoutMs) {
      return refusal(
        400,
        "bad_timeout",
        `Cannot use timeout_ms=${
          JSON.stringify(given.slice(0, 20))
        }: give a whole number of milliseconds from 1 to ${maxTimeoutMs}`,
      );
    }
    return value;
  }

  async function callFunction(request: Request, key: KeyRecord, fn: string): Promise<Response> {
    if (!mayCall(key, fn)) {
      return refusal(
        403,
        "forbidden",
        `Cannot call '${fn}' with this key: its functions are ${
          key.functions.join(", ") || "none"
        }; use a key made with --functions ${fn}`,
      );
    }
    if (!NAME.test(fn) || !backend.functions.has(fn)) {
      return refusal(
        404,
        "no_such_function",
        `Cannot call '${
          fn.slice(0, 64)
        }' as the registry has no such function: see GET /openapi.json for those there are`,
      );
    }
    const url = new URL(request.url);
    const timeout = timeoutOf(url);
    if (timeout instanceof Response) return timeout;
    const payload = await readJson(request);
    if (payload instanceof Response) return payload;
    if (
      payload !== undefined &&
      (typeof payload !== "object" || payload === null || Array.isArray(payload))
    ) {
      return refusal(
        400,
        "bad_payload",
        "Cannot call with a body that is not a JSON object: send an object, which becomes the payload",
      );
    }
    const async = /(^|[,;\s])respond-async($|[,;\s])/i.test(request.headers.get("prefer") ?? "");
    const callback = request.headers.get("callback-url") ?? undefined;
    if (callback !== undefined) {
      if (!async) {
        return refusal(
          400,
          "bad_callback",
          "Cannot call back a synchronous call: add 'Prefer: respond-async', or drop Callback-URL",
        );
      }
      try {
        await checkCallbackUrl(callback, callbackPolicy, options.callbacks?.resolve);
      } catch (error) {
        if (!(error instanceof CallbackRefused)) throw error;
        return refusal(400, "callback_refused", error.message);
      }
    }
    const idempotencyKey = request.headers.get("idempotency-key");
    if (idempotencyKey === null) {
      return startCall(key, fn, payload as Payload | undefined, timeout, async, callback);
    }
    if (!/^[\x21-\x7e]{1,255}$/.test(idempotencyKey)) {
      return refusal(
        400,
        "bad_idempotency_key",
        "Cannot use the Idempotency-Key: give 1 to 255 printable ASCII characters, such as a UUID",
      );
    }
    const fingerprint = await sha256Hex(
      JSON.stringify([fn, async, timeout, payload ?? null, callback ?? null]),
    );
    let claim: IdempotencyClaim;
    try {
      // Held past the call's own timeout: a claim whose replica died frees the key after it.
      claim = await calls.claim(key.id, idempotencyKey, fingerprint, timeout + CLAIM_MARGIN_MS);
    } catch (error) {
      if (error instanceof StoreUnavailableError) return storeUnavailable(`call '${fn}'`);
      throw error;
    }
    if (claim.kind === "mismatch") {
      return refusal(
        422,
        "idempotency_key_reused",
        "Cannot reuse this Idempotency-Key for another request (function, payload, timeout or Prefer differ): use a new key for a new request",
      );
    }
    if (claim.kind === "repeat") return fromStored(await claim.response, true);
    let stored: StoredResponse;
    try {
      stored = await toStored(
        await startCall(key, fn, payload as Payload | undefined, timeout, async, callback),
      );
    } catch (error) {
      claim.release({ status: 500, headers: [], body: "{}" });
      throw error;
    }
    // Kept only when a call was made: a refusal (429, 503) is no answer to repeat.
    if (STORED_STATUSES.has(stored.status)) claim.settle(stored);
    else claim.release(stored);
    return fromStored(stored, false);
  }

  async function startCall(
    key: KeyRecord,
    fn: string,
    payload: Payload | undefined,
    timeout: number,
    async: boolean,
    callback?: string,
  ): Promise<Response> {
    if (!connected()) return unavailable(`call '${fn}'`);
    try {
      if (!await workersUp(fn)) {
        return refusal(
          503,
          "no_workers",
          `Cannot call '${fn}' as no worker serves it now: retry after ${unavailableRetryS} s, or start its workers`,
          { "retry-after": String(unavailableRetryS) },
        );
      }
    } catch {
      return unavailable(`call '${fn}'`);
    }
    const leave = enter(key);
    if (leave instanceof Response) return leave;
    if (async) {
      if (calls.unavailable() !== undefined) {
        leave();
        return storeUnavailable(`call '${fn}' asynchronously`);
      }
      if (!calls.hasRoom()) {
        leave();
        return refusal(503, "busy", `Cannot take more asynchronous calls now: retry after 1 s`, {
          "retry-after": "1",
        });
      }
      let id: string;
      try {
        id = await calls.submit({
          fn,
          payload,
          timeoutMs: timeout,
          owner: key.id,
          // Only with somewhere to deliver it: the policy checked it already.
          callback: options.callbacks ? callback : undefined,
          done: leave,
        });
      } catch (error) {
        leave();
        if (error instanceof BrokerUnavailableError) return unavailable(`call '${fn}'`);
        if (error instanceof StoreUnavailableError) {
          return storeUnavailable(`call '${fn}' asynchronously`);
        }
        throw error;
      }
      const location = `/calls/${id}`;
      return json(202, { id, function: fn, status: "pending", location }, { location });
    }
    try {
      const outcome = await backend.request(fn, payload, { timeoutMs: timeout });
      return outcomeResponse(fn, outcome, timeout);
    } catch (error) {
      if (error instanceof BrokerUnavailableError) return unavailable(`call '${fn}'`);
      throw error;
    } finally {
      leave();
    }
  }

  /** The call `id` of `key`, a 404, or a 503 when the store cannot tell. */
  async function findCall(key: KeyRecord, id: string): Promise<StoredCall | Response> {
    try {
      return await calls.find(id, key.id) ?? noSuchCall(id);
    } catch (error) {
      if (error instanceof StoreUnavailableError) return storeUnavailable(`find call ${id}`);
      throw error;
    }
  }

  async function getCall(key: KeyRecord, id: string): Promise<Response> {
    const record = await findCall(key, id);
    if (record instanceof Response) return record;
    const body = callBody(record);
    return json(200, body, body.status === "pending" ? { "retry-after": "1" } : {});
  }

  /**
   * `GET /calls/{id}/events`: server-sent events, `pending` at once, then
   * `outcome` (the body `GET /calls/{id}` would give) when the call ends,
   * and the stream closes; a comment every `keepAliveMs` in between.
   */
  async function callEvents(request: Request, key: KeyRecord, id: string): Promise<Response> {
    const record = await findCall(key, id);
    if (record instanceof Response) return record;
    const encoder = new TextEncoder();
    let timer: ReturnType<typeof setInterval> | undefined;
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        const send = (text: string) => controller.enqueue(encoder.encode(text));
        if (!record.endedMs) {
          send(sseEvent("pending", { id, function: record.function, status: "pending" }));
          timer = setInterval(() => send(": keep-alive\n\n"), keepAliveMs);
          const gone = new Promise<void>((resolve) =>
            request.signal.addEventListener("abort", () => resolve(), { once: true })
          );
          await Promise.race([record.ended, gone]);
          clearInterval(timer);
          if (request.signal.aborted) return controller.close();
        }
        send(sseEvent("outcome", callBody(record)));
        controller.close();
      },
      cancel() {
        clearInterval(timer);
      },
    });
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      },
    });
  }

  async function cancel(key: KeyRecord, id: string): Promise<Response> {
    const record = await findCall(key, id);
    if (record instanceof Response) return record;
    try {
      const result = await backend.cancel(id, { until: record.deadline });
      return json(200, { id, function: record.function, cancel: result.status });
    } catch (error) {
      if (error instanceof BrokerUnavailableError) return unavailable(`cancel call ${id}`);
      throw error;
    }
  }

  async function emit(request: Request, key: KeyRecord): Promise<Response> {
    const contentType = (request.headers.get("content-type") ?? "").toLowerCase();
    const body = await readJson(request);
    if (body instanceof Response) return body;
    let type: unknown, id: unknown, data: unknown, subject: unknown, time: unknown;
    if (contentType.startsWith("application/cloudevents+json")) {
      if (typeof body !== "object" || body === null || Array.isArray(body)) {
        return refusal(400, "bad_event", "Cannot read the event: send a CloudEvent JSON object");
      }
      const event = body as Record<string, unknown>;
      if (event.specversion !== "1.0") {
        return refusal(400, "bad_event", "Cannot read the event: give specversion '1.0'");
      }
      ({ type, id, data, subject, time } = event);
    } else {
      const h = request.headers;
      if (h.get("ce-specversion") !== "1.0") {
        return refusal(
          400,
          "bad_event",
          "Cannot read the event: send it structured (Content-Type: application/cloudevents+json) or binary with ce-specversion: 1.0, ce-type, ce-id and ce-source headers",
        );
      }
      type = h.get("ce-type") ?? undefined;
      id = h.get("ce-id") ?? undefined;
      subject = h.get("ce-subject") ?? undefined;
      time = h.get("ce-time") ?? undefined;
      data = body ?? {};
    }
    if (typeof type !== "string" || !mayEmit(key, type)) {
      return refusal(
        403,
        "forbidden",
        `Cannot emit ${
          JSON.stringify(String(type).slice(0, 80))
        } with this key: its event patterns are ${
          key.events.join(", ") || "none"
        }; use a key made with --events for it`,
      );
    }
    if (id !== undefined && (typeof id !== "string" || !/^[\x21-\x7e]{1,128}$/.test(id))) {
      return refusal(
        400,
        "bad_event",
        "Cannot use the event's id: give 1 to 128 printable characters",
      );
    }
    if (!connected()) return unavailable(`emit '${type}'`);
    try {
      const emitted = await backend.emit(type, (data ?? {}) as Record<string, unknown>, {
        ...(typeof id === "string" && { id }),
        ...(typeof subject === "string" && { subject }),
        ...(typeof time === "string" && { time }),
        source: `/gateway/keys/${key.id}`,
      });
      return json(202, { id: emitted, type });
    } catch (error) {
      if (error instanceof BrokerUnavailableError) return unavailable(`emit '${type}'`);
      if (error instanceof PublishForbiddenError) {
        return refusal(
          403,
          "forbidden",
          `Cannot emit '${type}' as the gateway's broker user may not: grant it in functions/registry.yaml (events.emitters) and deploy the definitions again`,
        );
      }
      if (error instanceof TypeError) return refusal(400, "bad_event", error.message);
      throw error;
    }
  }

  async function route(request: Request): Promise<{ route: string; response: Response }> {
    const url = new URL(request.url);
    const path = url.pathname;
    if (path === "/healthz" && request.method === "GET") {
      if (!connected()) return { route: "healthz", response: unavailable("serve") };
      // Synchronous calls still go: the replica stays in service, and says what it lacks.
      const lacking = calls.unavailable();
      return {
        route: "healthz",
        response: json(200, lacking ? { status: "degraded", calls: lacking } : { status: "ok" }),
      };
    }
    if (path === "/metrics" && request.method === "GET") {
      return {
        route: "metrics",
        response: new Response(metrics.text() + (calls.metricsText?.() ?? ""), {
          headers: { "content-type": "text/plain; version=0.0.4" },
        }),
      };
    }
    const key = await authenticate(request);
    if (key instanceof Response) return { route: "auth", response: key };
    const limited = admit(key);
    if (limited) return { route: "limit", response: limited };
    if (path === "/openapi.json" && request.method === "GET") {
      return { route: "openapi", response: json(200, openApiOf(backend.functions.keys())) };
    }
    const fn = FUNCTION_PATH.exec(path);
    if (fn) {
      if (request.method !== "POST") return { route: "function", response: notAllowed("POST") };
      return { route: "function", response: await callFunction(request, key, fn[1]) };
    }
    const events = CALL_EVENTS_PATH.exec(path);
    if (events) {
      if (request.method !== "GET") return { route: "call_events", response: notAllowed("GET") };
      return { route: "call_events", response: await callEvents(request, key, events[1]) };
    }
    const call = CALL_PATH.exec(path);
    if (call) {
      if (request.method === "GET") {
        return { route: "call", response: await getCall(key, call[1]) };
      }
      if (request.method === "DELETE") {
        return { route: "cancel", response: await cancel(key, call[1]) };
      }
      return { route: "call", response: notAllowed("GET, DELETE") };
    }
    if (path === "/events") {
      if (request.method !== "POST") return { route: "events", response: notAllowed("POST") };
      return { route: "events", response: await emit(request, key) };
    }
    return {
      route: "other",
      response: refusal(
        404,
        "not_found",
        "Cannot find that address: the gateway serves POST /functions/{name}, GET and DELETE /calls/{id}, POST /events, GET /openapi.json, /healthz and /metrics",
      ),
    };
  }

  const corsOrigins = new Set(options.corsOrigins ?? []);

  async function handler(request: Request, client?: RequestClient): Promise<Response> {
    const started = now();
    let result: { route: string; response: Response };
    const origin = request.headers.get("origin");
    const cors = origin !== null && corsOrigins.has(origin) ? origin : undefined;
    const address = client?.address ?? "unknown";
    const limitKey = client?.limitKey ?? address;
    // Probes need no key: a blocked address (a NAT's, say) still sees the gateway's health.
    const path = new URL(request.url).pathname;
    const wait = path === "/healthz" || path === "/metrics" ? 0 : failures.wait(limitKey);
    try {
      result = wait > 0
        ? {
          route: "auth_limit",
          response: refusal(
            429,
            "too_many_failures",
            `Cannot serve ${address} now as its requests failed authentication too often: check the key and its scope, and retry after ${wait} s`,
            { "retry-after": String(wait) },
          ),
        }
        : cors && request.method === "OPTIONS"
        ? {
          route: "cors",
          response: new Response(null, {
            status: 204,
            headers: {
              "access-control-allow-methods": "GET, POST, DELETE",
              "access-control-allow-headers":
                "authorization, content-type, prefer, idempotency-key, callback-url, traceparent, ce-specversion, ce-type, ce-id, ce-source, ce-subject, ce-time",
              "access-control-max-age": "600",
            },
          }),
        }
        : await route(request);
    } catch (error) {
      log(`gateway: unexpected error ${(error as Error)?.name}: ${(error as Error)?.message}`);
      result = {
        route: "error",
        response: refusal(
          500,
          "internal",
          "Cannot serve the request: the gateway failed; report it with the time",
        ),
      };
    }
    if (cors) {
      result.response.headers.set("access-control-allow-origin", cors);
      result.response.headers.set("access-control-expose-headers", "location, retry-after");
      result.response.headers.append("vary", "origin");
    }
    const status = result.response.status;
    if ((status === 401 || status === 403) && failures.fail(limitKey)) {
      log(`gateway: ${address} failed authentication too often: refused (429) until it slows down`);
    }
    metrics.observe(result.route, status, (now() - started) / 1000);
    log(
      `${address} ${request.method} ${path.slice(0, 200)} ${status}`,
    );
    return result.response;
  }

  return { handler, metrics, calls };
}

/** How long a claimed Idempotency-Key is held past its request's timeout, unless settled. */
export const CLAIM_MARGIN_MS = 30_000;

async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** The body `GET /calls/{id}` gives for `record` (and a callback carries). */
export function callBody(record: StoredCall): Record<string, unknown> {
  const { id } = record;
  if (record.outcome) return outcomeBody(record.function, record.outcome, undefined).body;
  if (record.lost) {
    return {
      id,
      function: record.function,
      status: "lost",
      message:
        `Cannot tell how call ${id} ended as the gateway lost track of it (${record.lost}): call again if it is safe to`,
    };
  }
  return { id, function: record.function, status: "pending" };
}

function notAllowed(allow: string): Response {
  return refusal(405, "method_not_allowed", `Cannot serve this method here: use ${allow}`, {
    allow,
  });
}

function noSuchCall(id: string): Response {
  return refusal(
    404,
    "no_such_call",
    `Cannot find call ${
      JSON.stringify(id.slice(0, 64))
    } among this key's asynchronous calls: check the id from the 202's Location (calls are kept an hour after they end)`,
  );
}

/** The response for a call's outcome: 200, 500 with the error, 409 cancelled, 504 timeout. */
export function outcomeResponse(
  fn: string,
  outcome: CallOutcome,
  timeoutMs: number | undefined,
  errorStatus?: number,
): Response {
  const { status, body } = outcomeBody(fn, outcome, timeoutMs);
  return json(status === 200 ? 200 : errorStatus ?? status, body);
}

/** A call's outcome as JSON, with the status a synchronous call answers it with. */
export function outcomeBody(
  fn: string,
  outcome: CallOutcome,
  timeoutMs: number | undefined,
): { status: number; body: Record<string, unknown> } {
  if (outcome.kind === "timeout") {
    return {
      status: 504,
      body: {
        id: outcome.taskId,
        function: fn,
        status: "timeout",
        error: "timeout",
        message: `Cannot answer as ${fn} did not reply${
          timeoutMs ? ` within ${timeoutMs} ms` : " in time"
        }: retry later, or give a longer ?timeout_ms=`,
      },
    };
  }
  const reply = outcome.reply;
  if (reply.status === "success") {
    return {
      status: 200,
      body: {
        id: outcome.taskId,
        function: fn,
        status: "success",
        result: reply.result,
        attempts: reply.attempts,
        duration_ms: reply.duration_ms,
      },
    };
  }
  const type = reply.error?.type ?? "Error";
  return {
    status: type === "Cancelled" ? 409 : 500,
    body: {
      id: outcome.taskId,
      function: fn,
      status: "error",
      error: { type, message: reply.error?.message ?? "" },
      attempts: reply.attempts,
      message: `Cannot answer with a result as ${fn} failed after ${reply.attempts} attempt${
        reply.attempts === 1 ? "" : "s"
      } with ${type}: fix the payload if the error names it, else retry later`,
    },
  };
}
