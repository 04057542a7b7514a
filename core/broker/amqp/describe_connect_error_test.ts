import assert from "node:assert/strict";
import { describeConnectError } from "./describe_connect_error.ts";

const URL_ = "amqps://dispatcher:s3cretpw@localhost:5671";

/** An error as Deno's node:tls reports it: a message and a code. */
function tlsError(message: string, code?: string): Error {
  return Object.assign(new Error(message), code ? { code } : {});
}

Deno.test("describeConnectError() names the CA file when the broker's certificate is not signed by it", () => {
  const failure = describeConnectError(
    tlsError("self-signed certificate in certificate chain", "SELF_SIGNED_CERT_IN_CHAIN"),
    URL_,
    {
      timeoutMs: 5000,
      tls: { ca: { pem: "", setting: "--ca-file", path: "/tmp/wrong-ca.pem" } },
      names: { caFile: "--ca-file", certFile: "--cert-file", keyFile: "--key-file" },
    },
  );
  assert.deepEqual(failure, {
    unreachable: false,
    message:
      "Cannot connect to the broker at amqps://dispatcher:***@localhost:5671 as its TLS certificate is not signed by the CA in --ca-file '/tmp/wrong-ca.pem' (self-signed certificate in certificate chain): set --ca-file to the CA certificate that signed the broker's certificate",
  });
});

Deno.test("describeConnectError() says which setting gives a CA when none was given", () => {
  const { message } = describeConnectError(
    tlsError("invalid peer certificate: UnknownIssuer"),
    URL_,
    { timeoutMs: 5000 },
  );
  assert.match(message, /is not signed by a CA this system trusts .*: set AMQP_CA_FILE to the CA/);
});

Deno.test("describeConnectError() explains each TLS refusal with its fix", () => {
  const cases: [Error, RegExp][] = [
    [
      tlsError(
        "received fatal alert: CertificateRequired",
        "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED",
      ),
      /as it requires a client certificate .*: set AMQP_CERT_FILE and AMQP_KEY_FILE$/,
    ],
    [
      tlsError("received fatal alert: UnknownCA", "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA"),
      /as it refused this client's certificate/,
    ],
    [
      tlsError("certificate has expired", "CERT_HAS_EXPIRED"),
      /as its TLS certificate has expired or is not valid yet/,
    ],
    [
      tlsError("Hostname/IP does not match certificate's altnames", "ERR_TLS_CERT_ALTNAME_INVALID"),
      /does not name the host 'localhost'/,
    ],
    [
      tlsError(
        "received corrupt message of type InvalidContentType",
        "ERR_SSL_WRONG_VERSION_NUMBER",
      ),
      /as it does not speak TLS on that port: use amqp:\/\/ there/,
    ],
  ];
  for (const [error, pattern] of cases) {
    const failure = describeConnectError(error, URL_, { timeoutMs: 5000 });
    assert.match(failure.message, pattern);
    assert.equal(failure.unreachable, false, "TLS refusals are not worth waiting for");
  }
});

Deno.test("describeConnectError() tells unreachable from refused and never repeats the password", () => {
  const refused = describeConnectError(
    new Error("connect ECONNREFUSED 127.0.0.1:5671"),
    URL_,
    { timeoutMs: 5000 },
  );
  assert.equal(refused.unreachable, true);
  const login = describeConnectError(
    new Error('Handshake terminated by server: 403 (ACCESS-REFUSED) with message "ACCESS_REFUSED"'),
    URL_,
    { timeoutMs: 5000 },
  );
  assert.equal(login.unreachable, false);
  assert.match(login.message, /refused the user name or password/);
  const echoed = describeConnectError(new Error("weird failure for s3cretpw"), URL_, {
    timeoutMs: 5000,
  });
  assert.equal(
    echoed.message,
    "Cannot connect to the broker at amqps://dispatcher:***@localhost:5671: weird failure for ***",
  );
});
