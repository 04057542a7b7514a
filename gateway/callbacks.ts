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
 * bounded number of times with backoff.
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
  if (policy.allowPrivate) return url;
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
  return url;
}

/** Options of {@linkcode deliverCallback}. */
export interface DeliverOptions {
  policy: CallbackPolicy;
  resolve?: Resolve;
  /** @default {5} */
  attempts?: number;
  /** Wait before the second attempt; doubled each time. @default {1000} */
  firstDelayMs?: number;
  /** Each attempt's time limit. @default {10000} */
  timeoutMs?: number;
  fetch?: typeof fetch;
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
  const send = options.fetch ?? fetch;
  let delay = options.firstDelayMs ?? 1_000;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const checked = await checkCallbackUrl(url, options.policy, options.resolve);
      const response = await send(checked, {
        method: "POST",
        headers: { "content-type": "application/json", "x-gateway-call-id": callId },
        body: JSON.stringify(body),
        redirect: "manual",
        signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
      });
      await response.body?.cancel();
      if (response.status >= 200 && response.status < 300) return true;
      options.log?.(`gateway: callback for ${callId} answered ${response.status}`);
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
