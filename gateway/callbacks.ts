/**
 * Callbacks: an asynchronous call's outcome POSTed to a URL its caller
 * gave (`Callback-URL`), so that it need not poll. A gateway is a machine
 * inside the network that will fetch what a stranger names, so a callback
 * goes only to a host the configuration allows (`--callback-hosts`), over
 * http or https, and only when every address the host resolves to is a
 * public one: never loopback, link-local (cloud metadata at
 * 169.254.169.254), private, shared, multicast or unspecified addresses,
 * nor the broker's, unless `--callback-allow-private` says so. The check is
 * made when the call is taken and again before each delivery; redirects are
 * not followed (a 3xx is a failed delivery). Deliveries are retried a
 * bounded number of times with backoff. Each delivery connects to the very
 * address that passed the check (no second resolution a rebinding DNS
 * server could answer otherwise; postPinned) and, with a secret, is signed:
 * `Gateway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
 *
 * @module
 */

/** Which callbacks a gateway makes. */
export interface CallbackPolicy {
  /** Host names allowed (`hooks.example.com`, or `*.example.com` for its subdomains). */
  hosts: readonly string[];
  /** Allow loopback, private and link-local addresses (tests, a private network). */
  allowPrivate: boolean;
  /** The broker's host names or addresses, refused like private ones. */
  brokerHosts: readonly string[];
}

/** Resolves a host name to its addresses (A and AAAA). */
export type Resolve = (host: string) => Promise<string[]>;

/** `Deno.resolveDns` for A and AAAA records. */
export const resolveAddresses: Resolve = async (host) => {
  const found = await Promise.allSettled([
    Deno.resolveDns(host, "A"),
    Deno.resolveDns(host, "AAAA"),
  ]);
  return found.flatMap((result) => result.status === "fulfilled" ? result.value : []);
};

function ipv4Parts(address: string): number[] | undefined {
  const parts = address.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) {
    return undefined;
  }
  return parts.map(Number);
}

/** Why `address` (an IPv4 or IPv6 literal) is not a public address, or `undefined`. */
export function nonPublicReason(address: string): string | undefined {
  const v4 = ipv4Parts(address);
  if (v4) {
    const [a, b] = v4;
    if (a === 127) return "loopback";
    if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) {
      return "private";
    }
    if (a === 169 && b === 254) return "link-local";
    if (a === 100 && b >= 64 && b <= 127) return "shared (carrier-grade NAT)";
    if (a === 0) return "unspecified";
    if (a >= 224) return "multicast or reserved";
    return undefined;
  }
  const v6 = address.toLowerCase().replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  if (!v6.includes(":")) return "not an IP address";
  const mapped = /^(?:0{0,4}:){0,5}(?:0{0,4}:)?ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(v6) ??
    /^::(\d+\.\d+\.\d+\.\d+)$/.exec(v6);
  if (mapped) return nonPublicReason(mapped[1]) ?? undefined;
  if (v6 === "::1" || /^(0{1,4}:){7}0{0,3}1$/.test(v6)) return "loopback";
  if (v6 === "::" || /^(0{1,4}:){7}0{1,4}$/.test(v6)) return "unspecified";
  const first = parseInt(v6.split(":")[0] || "0", 16);
  if ((first & 0xffc0) === 0xfe80) return "link-local";
  if ((first & 0xfe00) === 0xfc00) return "private (unique local)";
  if ((first & 0xff00) === 0xff00) return "multicast";
  return undefined;
}

function hostAllowed(host: string, hosts: readonly string[]): boolean {
  return hosts.some((allowed) =>
    allowed.startsWith("*.") ? host.endsWith(allowed.slice(1)) : host === allowed
  );
}

/** A refused callback URL, with what to do. */
export class CallbackRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CallbackRefused";
  }
}

/**
 * Checks `text` as a callback URL under `policy`; resolves with the URL,
 * or rejects with a {@linkcode CallbackRefused} saying why.
 */
export async function checkCallbackUrl(
  text: string,
  policy: CallbackPolicy,
  resolve: Resolve = resolveAddresses,
): Promise<URL> {
  return (await checkCallbackTarget(text, policy, resolve)).url;
}

/**
 * {@linkcode checkCallbackUrl}, resolving with the addresses that passed
 * too: the ones a delivery may connect to.
 */
export async function checkCallbackTarget(
  text: string,
  policy: CallbackPolicy,
  resolve: Resolve = resolveAddresses,
): Promise<{ url: URL; addresses: string[] }> {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CallbackRefused(
      "Cannot use the Callback-URL as it is no URL: give https://host/path",
    );
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new CallbackRefused(`Cannot call back over ${url.protocol}: use https:// or http://`);
  }
  if (url.username || url.password) {
    throw new CallbackRefused("Cannot call back to a URL with credentials in it: remove them");
  }
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (!hostAllowed(host, policy.hosts)) {
    throw new CallbackRefused(
      `Cannot call back to '${host}' as the gateway allows callbacks to ${
        policy.hosts.length ? policy.hosts.join(", ") : "no host"
      }: ask its operator to add it to --callback-hosts`,
    );
  }
  const literal = ipv4Parts(host) !== undefined || host.includes(":");
  const addresses = literal ? [host] : await resolve(host);
  if (addresses.length === 0) {
    throw new CallbackRefused(`Cannot call back to '${host}' as it resolves to no address`);
  }
  if (policy.allowPrivate) return { url, addresses };
  const broker = new Set(policy.brokerHosts.map((h) => h.toLowerCase()));
  const brokerAddresses = new Set<string>();
  for (const name of broker) {
    const isLiteral = ipv4Parts(name) !== undefined || name.includes(":");
    for (const a of isLiteral ? [name] : await resolve(name).catch(() => [])) {
      brokerAddresses.add(a);
    }
  }
  for (const address of addresses) {
    const reason = nonPublicReason(address) ??
      (broker.has(host) || brokerAddresses.has(address) ? "the broker's" : undefined);
    if (reason) {
      throw new CallbackRefused(
        `Cannot call back to '${host}' as it resolves to ${address}, a ${reason} address: give a public host`,
      );
    }
  }
  return { url, addresses };
}

/** The header that carries a delivery's signature. */
export const SIGNATURE_HEADER = "gateway-signature";

/** The shortest callback secret taken, in bytes. */
export const MIN_SECRET_BYTES = 32;

function hex(bytes: ArrayBuffer | Uint8Array): string {
  return Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");
}

function hmacKey(secret: string): Promise<CryptoKey> {
  return crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
}

/** The `Gateway-Signature` value of `body` sent at `seconds` (unix time). */
export async function signCallback(secret: string, seconds: number, body: string): Promise<string> {
  const mac = await crypto.subtle.sign(
    "HMAC",
    await hmacKey(secret),
    new TextEncoder().encode(`${seconds}.${body}`),
  );
  return `t=${seconds},v1=${hex(mac)}`;
}

/** Options of {@linkcode verifyCallback}. */
export interface VerifyCallbackOptions {
  /** How far `t` may be from now, either way, in seconds. @default {300} */
  toleranceS?: number;
  /** Now, in unix seconds. */
  nowS?: number;
}

/**
 * Whether `header` signs `body` with `secret` within the tolerance: what a
 * receiver does (docs/gateway.md shows it standalone). Every `v1` is
 * tried, so a receiver may hold an old and a new secret while they rotate.
 */
export async function verifyCallback(
  secret: string,
  header: string | null,
  body: string,
  options: VerifyCallbackOptions = {},
): Promise<boolean> {
  if (header === null || header.length > 1024) return false;
  const fields = header.split(",").map((part) => part.trim().split("="));
  const t = fields.find(([name]) => name === "t")?.[1] ?? "";
  if (!/^\d{1,12}$/.test(t)) return false;
  const nowS = options.nowS ?? Math.floor(Date.now() / 1000);
  if (Math.abs(nowS - Number(t)) > (options.toleranceS ?? 300)) return false;
  const key = await hmacKey(secret);
  for (const [name, value] of fields) {
    if (name !== "v1" || !/^[0-9a-f]{64}$/.test(value)) continue;
    const mac = Uint8Array.from(value.match(/../g)!.map((h) => parseInt(h, 16)));
    // crypto.subtle.verify compares in constant time.
    if (await crypto.subtle.verify("HMAC", key, mac, new TextEncoder().encode(`${t}.${body}`))) {
      return true;
    }
  }
  return false;
}

/**
 * Reads a callback secret file: its text without the line end, at least
 * {@linkcode MIN_SECRET_BYTES} bytes; a `RangeError` says what to fix.
 */
export async function readCallbackSecret(file: string): Promise<string> {
  const secret = (await Deno.readTextFile(file)).replace(/\r?\n$/, "");
  if (new TextEncoder().encode(secret).byteLength < MIN_SECRET_BYTES || /[\r\n]/.test(secret)) {
    throw new RangeError(
      `Cannot sign callbacks with the secret in '${file}': give one line of at least ${MIN_SECRET_BYTES} bytes, such as the output of 'openssl rand -hex 32'`,
    );
  }
  return secret;
}

/** A new callback secret: 32 random bytes, hex. */
export function newCallbackSecret(): string {
  return hex(crypto.getRandomValues(new Uint8Array(32)));
}

/** One delivery as {@linkcode DeliverOptions.post} makes it. */
export interface CallbackPost {
  /** The URL as given: its path, its host (for Host, SNI and the certificate). */
  url: URL;
  /** Where to connect: an address that passed the check. */
  address: string;
  headers: Record<string, string>;
  body: string;
  timeoutMs: number;
  caCerts?: string[];
}

/** The longest status line read from a receiver. */
const MAX_STATUS_LINE = 8192;

/**
 * POSTs over a connection to `post.address` itself, HTTP/1.1 by hand, and
 * resolves with the status. No second resolution of the name: `fetch`
 * resolves the URL's host again, and Deno's HTTP client pins a "tcp"
 * transport for http only (over it, https is sent in clear). So the socket
 * is opened to the checked address, and for https upgraded with the URL's
 * host name, which is sent in SNI and checked against the certificate.
 * Only the status line is read; a 3xx is a status like any other.
 */
export async function postPinned(post: CallbackPost): Promise<number> {
  const { url } = post;
  const https = url.protocol === "https:";
  const signal = AbortSignal.timeout(post.timeoutMs);
  const port = Number(url.port || (https ? 443 : 80));
  let conn: Deno.Conn = await Deno.connect({ hostname: post.address, port, signal });
  const close = () => {
    try {
      conn.close();
    } catch {
      // Closed already.
    }
  };
  signal.addEventListener("abort", close, { once: true });
  try {
    if (https) {
      conn = await Deno.startTls(conn as Deno.TcpConn, {
        hostname: url.hostname.replace(/^\[|\]$/g, ""),
        ...(post.caCerts && { caCerts: post.caCerts }),
      });
    }
    const body = new TextEncoder().encode(post.body);
    // Header values are the gateway's own; the URL parser leaves no line break in path or host.
    const head = [
      `POST ${url.pathname}${url.search} HTTP/1.1`,
      `host: ${url.host}`,
      ...Object.entries(post.headers).map(([name, value]) => `${name}: ${value}`),
      `content-length: ${body.byteLength}`,
      "connection: close",
      "",
      "",
    ].join("\r\n");
    const bytes = new Uint8Array([...new TextEncoder().encode(head), ...body]);
    for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
    let line = "";
    const decoder = new TextDecoder();
    for await (const chunk of conn.readable) {
      line += decoder.decode(chunk, { stream: true });
      if (line.includes("\r\n") || line.length > MAX_STATUS_LINE) break;
    }
    const status = /^HTTP\/1\.[01] (\d{3})[ \r]/.exec(line);
    if (!status) throw new TypeError("Cannot read the receiver's answer: it is no HTTP/1.1 status");
    return Number(status[1]);
  } finally {
    signal.removeEventListener("abort", close);
    close();
  }
}

/** Options of {@linkcode deliverCallback}. */
export interface DeliverOptions {
  policy: CallbackPolicy;
  /** Signs each delivery (Gateway-Signature); unsigned without it. */
  secret?: string;
  /** Now, in unix milliseconds, for the signature's time. @default {Date.now} */
  clock?: () => number;
  /** Certificate authorities (PEM) trusted beside the system's, for https receivers. */
  caCerts?: string[];
  /** Makes one delivery, resolving with its status. @default {postPinned} */
  post?: (post: CallbackPost) => Promise<number>;
  resolve?: Resolve;
  /** @default {5} */
  attempts?: number;
  /** Wait before the second attempt; doubled each time. @default {1000} */
  firstDelayMs?: number;
  /** Each attempt's time limit. @default {10000} */
  timeoutMs?: number;
  log?: (line: string) => void;
}

/**
 * POSTs `body` to `url`, checked again first, until a 2xx answers or the
 * attempts run out; resolves with whether it was delivered.
 */
export async function deliverCallback(
  url: string,
  body: unknown,
  callId: string,
  options: DeliverOptions,
): Promise<boolean> {
  const attempts = options.attempts ?? 5;
  const post = options.post ?? postPinned;
  // One text for every attempt: the signature covers these very bytes.
  const text = JSON.stringify(body);
  let delay = options.firstDelayMs ?? 1_000;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const target = await checkCallbackTarget(url, options.policy, options.resolve);
      const headers: Record<string, string> = {
        "content-type": "application/json",
        "x-gateway-call-id": callId,
      };
      if (options.secret !== undefined) {
        const seconds = Math.floor((options.clock ?? Date.now)() / 1000);
        headers[SIGNATURE_HEADER] = await signCallback(options.secret, seconds, text);
      }
      const status = await post({
        url: target.url,
        address: target.addresses[0],
        headers,
        body: text,
        timeoutMs: options.timeoutMs ?? 10_000,
        ...(options.caCerts && { caCerts: options.caCerts }),
      });
      if (status >= 200 && status < 300) return true;
      options.log?.(`gateway: callback for ${callId} answered ${status}`);
    } catch (error) {
      if (error instanceof CallbackRefused) {
        options.log?.(`gateway: callback for ${callId} refused: ${error.message}`);
        return false;
      }
      options.log?.(`gateway: callback for ${callId} failed: ${(error as Error).name}`);
    }
    if (attempt < attempts) {
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay *= 2;
    }
  }
  return false;
}
