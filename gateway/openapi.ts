/**
 * `GET /openapi.json`: an OpenAPI 3.1 description of the gateway, one
 * path per function of the registry.
 *
 * @module
 */

const ERROR = { $ref: "#/components/schemas/Error" };

function errors(...codes: number[]): Record<string, unknown> {
  return Object.fromEntries(
    codes.map((code) => [String(code), {
      description: ERROR_MEANINGS[code],
      content: { "application/json": { schema: ERROR } },
    }]),
  );
}

const ERROR_MEANINGS: Record<number, string> = {
  400: "The body is not a JSON object, or nests too deep",
  401: "No API key, or one this gateway does not know",
  403: "The key may not call this function or emit this event",
  404: "No such function or call (another key's call is not found either)",
  408: "The body did not arrive in time",
  409: "The call was cancelled",
  413: "The body is too large",
  422: "The Idempotency-Key was used for another request",
  429: "Too many requests or calls in flight for this key: wait Retry-After seconds",
  500: "The function failed: its error type, message and attempts",
  503: "The broker or the function's workers are unavailable: retry after Retry-After seconds",
  504: "No reply within the call's timeout",
};

/** The description of a gateway serving `functions`. */
export function openApiOf(functions: Iterable<string>): Record<string, unknown> {
  const paths: Record<string, unknown> = {};
  for (const name of functions) {
    paths[`/functions/${name}`] = {
      post: {
        operationId: `call_${name}`,
        summary: `Call ${name}`,
        description:
          "Runs the function with the body as its payload and answers with its result. With 'Prefer: respond-async' answers 202 at once, with the call's address in Location.",
        parameters: [
          {
            name: "timeout_ms",
            in: "query",
            required: false,
            schema: { type: "integer", minimum: 1 },
          },
          { name: "Prefer", in: "header", required: false, schema: { type: "string" } },
          {
            name: "Idempotency-Key",
            in: "header",
            required: false,
            description: "A repeat with the same key gets the first request's response",
            schema: { type: "string", maxLength: 255 },
          },
        ],
        requestBody: {
          required: false,
          content: { "application/json": { schema: { type: "object" } } },
        },
        responses: {
          "200": {
            description: "The function's result",
            content: { "application/json": { schema: { $ref: "#/components/schemas/Call" } } },
          },
          "202": {
            description: "Accepted: GET the Location for its outcome",
            content: { "application/json": { schema: { $ref: "#/components/schemas/Call" } } },
          },
          ...errors(400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 503, 504),
        },
      },
    };
  }
  paths["/calls/{id}"] = {
    parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }],
    get: {
      operationId: "getCall",
      summary: "Where an asynchronous call is, and its outcome once it ended",
      responses: {
        "200": {
          description: "The call",
          content: { "application/json": { schema: { $ref: "#/components/schemas/Call" } } },
        },
        ...errors(401, 404),
      },
    },
    delete: {
      operationId: "cancelCall",
      summary: "Cancel an asynchronous call",
      responses: {
        "200": { description: "What the cancellation did" },
        ...errors(401, 404, 503),
      },
    },
  };
  paths["/calls/{id}/events"] = {
    parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }],
    get: {
      operationId: "callEvents",
      summary: "Server-sent events: 'pending', then 'outcome' when the call ends",
      responses: {
        "200": { description: "An event stream", content: { "text/event-stream": {} } },
        ...errors(401, 404),
      },
    },
  };
  paths["/events"] = {
    post: {
      operationId: "emitEvent",
      summary: "Emit a CloudEvent (HTTP binary or structured mode)",
      responses: {
        "202": { description: "The broker has the event" },
        ...errors(400, 401, 403, 413, 429, 503),
      },
    },
  };
  paths["/healthz"] = { get: { responses: { "200": { description: "Ready" } } } };
  paths["/metrics"] = { get: { responses: { "200": { description: "Prometheus text" } } } };
  return {
    openapi: "3.1.0",
    info: { title: "Task system gateway", version: "1" },
    paths,
    security: [{ apiKey: [] }],
    components: {
      securitySchemes: { apiKey: { type: "http", scheme: "bearer" } },
      schemas: {
        Error: {
          type: "object",
          required: ["error", "message"],
          properties: { error: { type: "string" }, message: { type: "string" } },
        },
        Call: {
          type: "object",
          required: ["id", "status"],
          properties: {
            id: { type: "string" },
            function: { type: "string" },
            status: { enum: ["pending", "success", "error", "timeout", "lost"] },
            result: {},
            error: {
              type: "object",
              properties: { type: { type: "string" }, message: { type: "string" } },
            },
            attempts: { type: "integer" },
          },
        },
      },
    },
  };
}
