/**
 * Turns a failed connection attempt into a message that says what to fix,
 * and tells whether anything answered at all (so that callers know whether
 * waiting can help). Messages name the broker with its password masked and
 * never quote a password, whatever the underlying error contains.
 *
 * @module
 */

import type { BrokerTls, TlsSettingNames } from "../broker.ts";
import { maskUrl, redactPassword } from "../url.ts";

/** The names a worker gives its TLS settings: its variables. */
const VARIABLE_NAMES: TlsSettingNames = {
  caFile: "AMQP_CA_FILE",
  certFile: "AMQP_CERT_FILE",
  keyFile: "AMQP_KEY_FILE",
};

/** Why a connection failed, for people, and whether nothing answered. */
export interface ConnectFailure {
  message: string;
  /** True when nothing answered; false when something answered and refused. */
  unreachable: boolean;
}

/** Options for {@linkcode describeConnectError}. */
export interface DescribeConnectErrorOptions {
  timeoutMs: number;
  /** The TLS material the attempt used, to name its files. */
  tls?: BrokerTls;
  /** @default {the AMQP_*_FILE variables} */
  names?: TlsSettingNames;
}

// Node's names for a certificate chain that does not lead to a trusted CA,
// and rustls's words for the same, as Deno reports them.
const UNTRUSTED_CODES = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
]);
const UNTRUSTED_TEXT = /UnknownIssuer|self.signed certificate|unable to (verify|get).*issuer/i;

/** Describes why connecting to `url` failed; see the module documentation. */
export function describeConnectError(
  error: unknown,
  url: string,
  options: DescribeConnectErrorOptions,
): ConnectFailure {
  const names = options.names ?? VARIABLE_NAMES;
  const unreachable = (message: string) => ({ message, unreachable: true });
  const refused = (message: string) => ({ message, unreachable: false });
  const where = `the broker at ${maskUrl(url)}`;
  const text = redactPassword(error instanceof Error ? error.message : String(error), url);
  const code = String((error as { code?: unknown } | null)?.code ?? "");
  const tls = options.tls ?? {};
  const detail = ` (${text})`;

  if (UNTRUSTED_CODES.has(code) || UNTRUSTED_TEXT.test(text)) {
    const signer = tls.ca
      ? `the CA in ${tls.ca.setting} '${tls.ca.path}'`
      : "a CA this system trusts";
    return refused(
      `Cannot connect to ${where} as its TLS certificate is not signed by ${signer}${detail}: set ${names.caFile} to the CA certificate that signed the broker's certificate`,
    );
  }
  if (code === "CERT_HAS_EXPIRED" || /certificate has expired|\bExpired\b/i.test(text)) {
    return refused(
      `Cannot connect to ${where} as its TLS certificate has expired or is not valid yet${detail}: renew the broker's certificate, or check this machine's clock`,
    );
  }
  if (
    code === "ERR_TLS_CERT_ALTNAME_INVALID" ||
    /NotValidForName|altnames?|does not match/i.test(text)
  ) {
    return refused(
      `Cannot connect to ${where} as its TLS certificate does not name the host '${
        new URL(url).hostname
      }'${detail}: connect with a host name the certificate names, or reissue it with that name`,
    );
  }
  if (
    /CERTIFICATE.?REQUIRED/i.test(code) || /CertificateRequired|certificate required/i.test(text)
  ) {
    return refused(
      `Cannot connect to ${where} as it requires a client certificate${detail}: set ${names.certFile} and ${names.keyFile}`,
    );
  }
  if (
    /UNKNOWN.?CA|BAD.?CERTIFICATE/i.test(code) ||
    /UnknownCA|BadCertificate|unknown ca|bad certificate/i.test(text)
  ) {
    return refused(
      `Cannot connect to ${where} as it refused this client's certificate${detail}: use a certificate signed by a CA the broker trusts in ${names.certFile} and ${names.keyFile}`,
    );
  }
  if (
    code === "ERR_SSL_WRONG_VERSION_NUMBER" ||
    /WRONG_VERSION_NUMBER|InvalidContentType|corrupt message/i.test(text)
  ) {
    return refused(
      `Cannot connect to ${where} as it does not speak TLS on that port: use amqp:// there, or the broker's TLS port (usually 5671)`,
    );
  }
  if (code === "ECONNREFUSED" || /ECONNREFUSED|Connection refused/i.test(text)) {
    return unreachable(
      `Cannot connect to ${where} as nothing is listening there: start RabbitMQ (for example 'docker compose up -d rabbitmq') or fix the URL`,
    );
  }
  if (code === "ENOTFOUND" || /ENOTFOUND|getaddrinfo|Name or service not known/i.test(text)) {
    return unreachable(
      `Cannot connect to ${where} as its host name does not resolve: fix the host in the URL`,
    );
  }
  if (/ACCESS.REFUSED|403/.test(text)) {
    return refused(
      `Cannot connect to ${where} as it refused the user name or password: check the credentials (the URL's user, and its password or password file)`,
    );
  }
  if (/NOT.ALLOWED|530|vhost/i.test(text)) {
    return refused(
      `Cannot connect to ${where} as the user may not use that virtual host: fix the vhost in the URL or the user's permissions`,
    );
  }
  if (/closed abruptly|ECONNRESET|socket hang up/i.test(text)) {
    const hint = new URL(url).protocol === "amqp:" ? ", the port expects TLS (amqps://)," : "";
    return unreachable(
      `Cannot connect to ${where} as it closed the connection during the handshake: it may still be starting${hint} or the port is not AMQP`,
    );
  }
  if (/timed? ?out|ETIMEDOUT/i.test(text)) {
    return unreachable(
      `Cannot connect to ${where} as it did not answer within ${options.timeoutMs} ms: check the host and port, and that the broker is healthy`,
    );
  }
  if (error instanceof Deno.errors.NotCapable || /NotCapable|Requires net access/i.test(text)) {
    return refused(
      `Cannot connect to ${where} as this process may not open that network address: allow it with --allow-net`,
    );
  }
  return refused(`Cannot connect to ${where}: ${text}`);
}
