/**
 * An OpenTelemetry collector small enough to live inside a test: it takes
 * OTLP/HTTP with the JSON protocol (`OTEL_EXPORTER_OTLP_PROTOCOL=http/json`),
 * as Deno's built-in exporter sends it, keeps every span of `POST
 * /v1/traces` and answers the other signals (logs, metrics) without
 * keeping them. Spans are flattened, with the `service.name` of the
 * process that exported them.
 *
 * @module
 */

/** One span, as the receiver keeps it. */
export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  /** `""` for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP's SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Record<string, string | number | boolean>;
  /** OTLP's status code: 0 unset, 1 ok, 2 error. */
  status: number;
}

/** A running receiver. */
export interface OtlpReceiver {
  /** What to set `OTEL_EXPORTER_OTLP_ENDPOINT` to, from this machine. */
  endpoint: string;
  port: number;
  /** Every span received so far, in arrival order. */
  spans: ReceivedSpan[];
  /** The variables that make a Deno process export its spans here, as `service`. */
  env(service: string, host?: string): Record<string, string>;
  close(): Promise<void>;
}

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
}

interface OtlpAttribute {
  key: string;
  value: OtlpValue;
}

function valueOf(value: OtlpValue): string | number | boolean {
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return value.doubleValue;
  return value.boolValue ?? "";
}

function attributesOf(
  list: OtlpAttribute[] | undefined,
): Record<string, string | number | boolean> {
  return Object.fromEntries((list ?? []).map(({ key, value }) => [key, valueOf(value)]));
}

interface ExportRequest {
  resourceSpans?: {
    resource?: { attributes?: OtlpAttribute[] };
    scopeSpans?: {
      spans?: {
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        kind: number;
        startTimeUnixNano: string;
        endTimeUnixNano: string;
        attributes?: OtlpAttribute[];
        status?: { code?: number };
      }[];
    }[];
  }[];
}

/**
 * Starts a receiver on `hostname` (default 127.0.0.1; `0.0.0.0` lets
 * containers reach it through `host.docker.internal`) and a free port.
 */
export function startOtlpReceiver(hostname = "127.0.0.1"): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  return new Promise((resolve) => {
    const server = Deno.serve({
      hostname,
      port: 0,
      onListen({ port }) {
        resolve({
          endpoint: `http://127.0.0.1:${port}`,
          port,
          spans,
          env: (service, host = "127.0.0.1") => ({
            OTEL_DENO: "true",
            OTEL_EXPORTER_OTLP_ENDPOINT: `http://${host}:${port}`,
            OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
            OTEL_SERVICE_NAME: service,
            OTEL_BSP_SCHEDULE_DELAY: "200",
          }),
          close: () => server.shutdown(),
        });
      },
    }, async (request) => {
      const path = new URL(request.url).pathname;
      if (request.method !== "POST") return new Response("POST only", { status: 405 });
      const body = await request.json() as ExportRequest;
      if (path === "/v1/traces") {
        for (const resource of body.resourceSpans ?? []) {
          const service = String(attributesOf(resource.resource?.attributes)["service.name"]);
          for (const scope of resource.scopeSpans ?? []) {
            for (const span of scope.spans ?? []) {
              spans.push({
                service,
                traceId: span.traceId,
                spanId: span.spanId,
                parentSpanId: span.parentSpanId ?? "",
                name: span.name,
                kind: span.kind,
                startNs: BigInt(span.startTimeUnixNano),
                endNs: BigInt(span.endTimeUnixNano),
                attributes: attributesOf(span.attributes),
                status: span.status?.code ?? 0,
              });
            }
          }
        }
      }
      return Response.json({});
    });
  });
}

/** The spans of one trace, each with its children, for assertions and a printed tree. */
export function traceTree(spans: ReceivedSpan[], traceId: string): string[] {
  const ours = spans.filter((s) => s.traceId === traceId)
    .sort((a, b) => (a.startNs < b.startNs ? -1 : a.startNs > b.startNs ? 1 : 0));
  const ids = new Set(ours.map((s) => s.spanId));
  const lines: string[] = [];
  const walk = (parent: string, depth: number) => {
    for (const span of ours) {
      const isChild = parent === "" ? !ids.has(span.parentSpanId) : span.parentSpanId === parent;
      if (!isChild) continue;
      const outcome = span.attributes["task.outcome"];
      lines.push(
        `${"  ".repeat(depth)}${span.name} [${span.service}]${outcome ? ` ${outcome}` : ""}`,
      );
      walk(span.spanId, depth + 1);
    }
  };
  walk("", 0);
  return lines;
}
