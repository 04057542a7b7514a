/**
 * Who a request comes from. The TCP peer is the only address a client
 * cannot choose; `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded`
 * are text anyone can send, so they are read only when the peer is one of
 * the proxies the operator names (`--trusted-proxies`), and then from the
 * right: each trusted proxy appends the address it saw, so the right-most
 * address that is not a trusted proxy is the client, and whatever a client
 * wrote to the left of it is ignored.
 *
 * @module
 */

/** An address block: 16 bytes (IPv4 as IPv4-mapped IPv6) and a prefix length. */
export interface Cidr {
  bytes: Uint8Array;
  bits: number;
}

/** Which header the trusted proxies write. */
export type ForwardedHeader = "x-forwarded-for" | "forwarded";

/** The client of a request, as the gateway believes it. */
export interface ClientInfo {
  /** The client's address, canonical (IPv4 dotted, IPv6 compressed). */
  address: string;
  /** What limits count under: the address, or its /64 for IPv6 (one host's usual block). */
  limitKey: string;
  /** The scheme the client used, from a trusted proxy, else the gateway's own. */
  proto: "http" | "https";
}

function parseV4(text: string): number[] | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const bytes: number[] = [];
  for (const part of parts) {
    // No leading zeros: "010" is octal to some parsers and decimal to others.
    if (!/^(0|[1-9]\d{0,2})$/.test(part) || Number(part) > 255) return undefined;
    bytes.push(Number(part));
  }
  return bytes;
}

function parseV6(text: string): number[] | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] === "" ? [] : halves[0].split(":");
  const tail = halves.length === 2 && halves[1] !== "" ? halves[1].split(":") : [];
  const last = halves.length === 2 ? tail : head;
  let v4: number[] = [];
  if (last.length > 0 && last[last.length - 1].includes(".")) {
    const parsed = parseV4(last.pop()!);
    if (!parsed) return undefined;
    v4 = parsed;
  }
  const words = (groups: string[]) => {
    const out: number[] = [];
    for (const group of groups) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return undefined;
      const word = parseInt(group, 16);
      out.push(word >> 8, word & 0xff);
    }
    return out;
  };
  const front = words(head);
  const back = words(tail);
  if (!front || !back) return undefined;
  const given = front.length + back.length + v4.length;
  if (halves.length === 2 ? given > 14 : given !== 16) return undefined;
  return [...front, ...Array(16 - given).fill(0), ...back, ...v4];
}

/** `text` as 16 bytes (IPv4 mapped into IPv6), or `undefined` when it is no IP address. */
export function parseIp(text: string): Uint8Array | undefined {
  if (text.length > 64) return undefined;
  const v4 = parseV4(text);
  if (v4) return Uint8Array.of(...Array(10).fill(0), 0xff, 0xff, ...v4);
  if (!text.includes(":")) return undefined;
  const v6 = parseV6(text.replace(/%[\w.-]{1,32}$/, ""));
  return v6 ? Uint8Array.from(v6) : undefined;
}

function isMappedV4(bytes: Uint8Array): boolean {
  return bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
}

/** The canonical text of an address: IPv4 dotted, IPv6 as RFC 5952 writes it. */
export function formatIp(bytes: Uint8Array): string {
  if (isMappedV4(bytes)) return Array.from(bytes.subarray(12)).join(".");
  const words = Array.from({ length: 8 }, (_, i) => (bytes[2 * i] << 8) | bytes[2 * i + 1]);
  let bestAt = -1, bestLength = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) [bestAt, bestLength] = [i, j - i];
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestAt < 0) return hex.join(":");
  return `${hex.slice(0, bestAt).join(":")}::${hex.slice(bestAt + bestLength).join(":")}`;
}

/**
 * Parses `10.0.0.0/8, 2001:db8::/32, 192.0.2.7` (a bare address is one
 * host); a `TypeError` names the entry that is not one.
 */
export function parseCidrs(list: string): Cidr[] {
  return list.split(",").map((entry) => entry.trim()).filter((entry) => entry !== "").map(
    (entry) => {
      const [address, prefix, ...rest] = entry.split("/");
      const bytes = parseIp(address);
      const v4 = bytes !== undefined && isMappedV4(bytes) && !address.includes(":");
      const max = v4 ? 32 : 128;
      const bits = prefix === undefined ? max : /^\d{1,3}$/.test(prefix) ? Number(prefix) : NaN;
      if (!bytes || rest.length > 0 || !(bits >= 0 && bits <= max)) {
        throw new TypeError(
          `Cannot read trusted proxy '${entry}': give an address or a block, such as 10.0.0.0/8 or 2001:db8::/32`,
        );
      }
      return { bytes, bits: v4 ? bits + 96 : bits };
    },
  );
}

/** Whether `address` (16 bytes) is in one of `blocks`. */
export function inCidrs(address: Uint8Array, blocks: readonly Cidr[]): boolean {
  return blocks.some(({ bytes, bits }) => {
    const whole = bits >> 3;
    for (let i = 0; i < whole; i++) if (address[i] !== bytes[i]) return false;
    const rest = bits & 7;
    if (rest === 0) return true;
    const mask = (0xff << (8 - rest)) & 0xff;
    return (address[whole] & mask) === (bytes[whole] & mask);
  });
}

/**
 * An address as a proxy writes it in a header: `192.0.2.1`,
 * `192.0.2.1:4711`, `[2001:db8::1]:4711`, `"[2001:db8::1]"`, bare IPv6;
 * `unknown`, an obfuscated `_name` or anything else is `undefined`.
 */
export function parseNodeAddress(text: string): Uint8Array | undefined {
  let node = text.trim();
  if (node.startsWith('"') && node.endsWith('"') && node.length >= 2) node = node.slice(1, -1);
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(node);
  if (bracketed) return parseIp(bracketed[1]);
  const v4WithPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/.exec(node);
  return parseIp(v4WithPort ? v4WithPort[1] : node);
}

/** The elements of a `Forwarded` header (RFC 7239), each a map of its lowercased parameters. */
export function parseForwarded(value: string): Map<string, string>[] {
  const elements: Map<string, string>[] = [];
  let current = new Map<string, string>();
  let pair = "";
  let quoted = false;
  const endPair = () => {
    const at = pair.indexOf("=");
    if (at > 0) {
      let text = pair.slice(at + 1).trim();
      if (text.startsWith('"') && text.endsWith('"') && text.length >= 2) {
        text = text.slice(1, -1).replace(/\\(.)/g, "$1");
      }
      current.set(pair.slice(0, at).trim().toLowerCase(), text);
    }
    pair = "";
  };
  for (const char of value) {
    if (char === '"') quoted = !quoted;
    if (!quoted && (char === ";" || char === ",")) {
      endPair();
      if (char === ",") {
        elements.push(current);
        current = new Map();
      }
      continue;
    }
    pair += char;
  }
  endPair();
  elements.push(current);
  return elements;
}

/** At most this many forwarded hops are read, from the right. */
const MAX_HOPS = 64;

function limitKeyOf(bytes: Uint8Array, address: string): string {
  if (isMappedV4(bytes)) return address;
  const prefix = new Uint8Array(16);
  prefix.set(bytes.subarray(0, 8));
  return `${formatIp(prefix)}/64`;
}

function protoOf(value: string | undefined): "http" | "https" | undefined {
  const proto = value?.trim().toLowerCase();
  return proto === "http" || proto === "https" ? proto : undefined;
}

/** Options of {@linkcode clientOf}. */
export interface ClientOfOptions {
  /** Proxies whose forwarding headers are believed. @default {[]} */
  trusted?: readonly Cidr[];
  /** The header they write. @default {"x-forwarded-for"} */
  header?: ForwardedHeader;
  /** The scheme the gateway itself serves. @default {"http"} */
  proto?: "http" | "https";
}

/**
 * The client of a request that came from TCP peer `peer` with `headers`:
 * the peer itself unless it is a trusted proxy; then the right-most
 * forwarded address that is not a trusted proxy (or the left-most one when
 * all are). An entry that is no address stops the walk at the proxy that
 * passed it on: what lies to its left cannot be told apart from a forgery.
 */
export function clientOf(
  peer: string | undefined,
  headers: Headers,
  options: ClientOfOptions = {},
): ClientInfo {
  const { trusted = [], header = "x-forwarded-for", proto: own = "http" } = options;
  const peerBytes = peer === undefined ? undefined : parseIp(peer);
  if (!peerBytes) {
    const address = peer ?? "unknown";
    return { address, limitKey: address, proto: own };
  }
  let bytes = peerBytes;
  let proto = own;
  if (inCidrs(peerBytes, trusted)) {
    const hops: { for: string; proto?: string }[] = [];
    if (header === "forwarded") {
      const value = headers.get("forwarded");
      if (value !== null) {
        for (const element of parseForwarded(value)) {
          hops.push({ for: element.get("for") ?? "", proto: element.get("proto") });
        }
      }
    } else {
      const value = headers.get("x-forwarded-for");
      if (value !== null) { for (const entry of value.split(",")) hops.push({ for: entry }); }
      // The right-most: what the proxy next to the gateway saw.
      const forwardedProto = protoOf(headers.get("x-forwarded-proto")?.split(",").pop());
      if (hops.length > 0 && forwardedProto) proto = forwardedProto;
    }
    for (const hop of hops.slice(-MAX_HOPS).reverse()) {
      const hopBytes = parseNodeAddress(hop.for);
      if (!hopBytes) break;
      bytes = hopBytes;
      const hopProto = protoOf(hop.proto);
      if (hopProto) proto = hopProto;
      if (!inCidrs(hopBytes, trusted)) break;
    }
  }
  const address = formatIp(bytes);
  return { address, limitKey: limitKeyOf(bytes, address), proto };
}
