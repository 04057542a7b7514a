/**
 * TLS refusals against a real handshake, without a broker: a TLS listener
 * in the test presents a certificate that has expired, one that names
 * another host, and one from a CA the tools were not given. Each time
 * `deno task dispatch` and `deno task status` refuse the broker with the
 * message docs/security.md promises, naming what to fix, and exit 3.
 */

import assert from "node:assert/strict";
import { NEEDS_OPENSSL } from "./_infra.ts";
import { freePort } from "./_helpers.ts";
import { runDeno } from "./_processes.ts";
import { withTempDir } from "./_temp_dir.ts";
import { type CertificateFiles, makeServerCertificate, makeTestPki } from "./_tls.ts";

/** Serves TLS handshakes with `files` on 127.0.0.1 until closed; no AMQP behind it. */
function tlsListener(files: CertificateFiles) {
  const port = freePort();
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port,
    cert: Deno.readTextFileSync(files.cert),
    key: Deno.readTextFileSync(files.key),
  });
  const serving = (async () => {
    for await (const connection of listener) {
      // The client refuses the certificate: the handshake fails on its side.
      connection.handshake().catch(() => {}).finally(() => {
        try {
          connection.close();
        } catch {
          // Closed by the client already.
        }
      });
    }
  })().catch(() => {});
  return {
    port,
    async close() {
      listener.close();
      await serving;
    },
  };
}

Deno.test({
  name:
    "an expired certificate, a wrong host name and an unknown CA: dispatch and status say what to fix and exit 3",
  ignore: NEEDS_OPENSSL,
  async fn() {
    await withTempDir(async (dir) => {
      const pki = await makeTestPki(dir, ["localhost"]);
      const cases = [
        {
          what: "an expired certificate",
          files: await makeServerCertificate(dir, "expired", {
            hostNames: ["localhost"],
            days: -1,
          }),
          ca: pki.ca,
          message:
            /as its TLS certificate has expired or is not valid yet \(.+\): renew the broker's certificate, or check this machine's clock$/m,
        },
        {
          what: "a certificate for another host",
          files: await makeServerCertificate(dir, "other", { hostNames: ["other.test"] }),
          ca: pki.ca,
          message:
            /as its TLS certificate does not name the host 'localhost' \(.+\): connect with a host name the certificate names, or reissue it with that name$/m,
        },
        {
          what: "a certificate from a CA it was not given",
          files: { cert: pki.serverCert, key: pki.serverKey },
          ca: pki.wrongCa,
          message: new RegExp(
            `as its TLS certificate is not signed by the CA in --ca-file '${pki.wrongCa}' \\(.+\\): set --ca-file or AMQP_CA_FILE to the CA certificate that signed the broker's certificate$`,
            "m",
          ),
        },
      ];
      for (const { what, files, ca, message } of cases) {
        const listener = tlsListener(files);
        try {
          const url = `amqps://guest:guest@localhost:${listener.port}`;
          for (const tool of [["dispatch", "--no-save"], ["status"]]) {
            const run = await runDeno(
              ["task", "-q", tool[0], "--broker", url, "--ca-file", ca, ...tool.slice(1)],
              {},
              { timeoutMs: 60_000 },
            );
            const output = run.stdout + run.stderr;
            assert.equal(run.code, 3, `${what}, ${tool[0]}: ${output}`);
            assert.match(output, message, `${what}, ${tool[0]}`);
            assert.match(
              output,
              /Cannot connect to the broker at amqps:\/\/guest:\*\*\*@localhost:/,
            );
            assert.ok(!output.includes("guest:guest"), "the password is masked");
          }
        } finally {
          await listener.close();
        }
      }
    });
  },
});
