/**
 * The gateway's edges as a process against the RabbitMQ at `AMQP_URL`:
 * its keys taken without a restart (SIGHUP, the file's changes; a bad file
 * keeps the keys), the client behind a trusted proxy (the log line and the
 * failed-authentication limit, per address), signed callbacks, and
 * callbacks over https pinned to the checked address with the URL's name
 * still checked against the certificate.
 */

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { deliverCallback, signCallback } from "../gateway/callbacks.ts";
import { AMQP_URL, NEEDS_OPENSSL, NEEDS_RABBITMQ } from "./_infra.ts";
import { makeTestPki } from "./_tls.ts";
import { deleteFunctionQueues, uniqueName, waitFor } from "./_helpers.ts";
import { runDeno, startWorkerProcess } from "./_processes.ts";
import { withTempDir } from "./_temp_dir.ts";
import { GATEWAY_ARGS, startGateway } from "./_gateway.ts";

async function keys(keysFile: string, ...args: string[]): Promise<{ key: string; said: string }> {
  const made = await runDeno([...GATEWAY_ARGS, "keys", ...args, "--keys-file", keysFile], {}, {
    timeoutMs: 60_000,
  });
  assert.equal(made.code, 0, made.stderr);
  return { key: made.stdout.trim(), said: made.stderr };
}

async function status(
  base: string,
  path: string,
  key: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const response = await fetch(base + path, {
    headers: { authorization: `Bearer ${key}`, ...headers },
    signal: AbortSignal.timeout(30_000),
  });
  return { status: response.status, headers: response.headers, body: await response.json() };
}

async function cleanUp(queue: string): Promise<void> {
  const broker = await connectAmqp(AMQP_URL, { connectionName: "gateway-edges-cleanup" });
  await deleteFunctionQueues(broker, queue);
  await broker.close();
}

Deno.test({
  name:
    "deno task gateway takes added and removed keys on SIGHUP without a restart; a bad keys file keeps the keys",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("gw_keys");
    await withTempDir(async (dir) => {
      const registry = `${dir}/registry.yaml`;
      await Deno.writeTextFile(registry, `functions:\n  task_a: { queue: ${queue} }\n`);
      const keysFile = `${dir}/gateway_keys.json`;
      const a = await keys(keysFile, "add", "--functions", "task_a");
      // A look at the file once in ten minutes: only SIGHUP can be what takes a change here.
      const { gateway, base } = await startGateway(registry, keysFile, [
        "--keys-poll-ms",
        "600000",
      ]);
      try {
        assert.equal((await status(base, "/openapi.json", a.key)).status, 200);
        const b = await keys(keysFile, "add", "--functions", "task_a");
        assert.match(b.said, /SIGHUP/, "keys add says how a running gateway takes it");
        assert.equal((await status(base, "/openapi.json", b.key)).status, 401, "not yet read");
        gateway.child.kill("SIGHUP");
        await gateway.waitForLine(/keys file .* read again: 2 key/);
        assert.equal((await status(base, "/openapi.json", b.key)).status, 200);

        const id = /^gw_([0-9a-f]{16})_/.exec(a.key)![1];
        const removed = await keys(keysFile, "remove", id);
        assert.match(removed.said, new RegExp(`key ${id} removed`));
        gateway.child.kill("SIGHUP");
        await gateway.waitForLine(/keys file .* read again: 1 key/);
        assert.equal((await status(base, "/openapi.json", a.key)).status, 401, "removed: refused");

        await Deno.writeTextFile(keysFile, '{"keys": [{"id": "nonsense"}]}');
        gateway.child.kill("SIGHUP");
        await gateway.waitForLine(
          /kept the 1 key\(s\) in use as .* cannot be read: Cannot read key 1/,
        );
        assert.equal((await status(base, "/openapi.json", b.key)).status, 200, "old keys kept");
        assert.ok(!gateway.lines.join("\n").includes(b.key.slice(20)), "no key in the output");
      } finally {
        await gateway.stop();
        await cleanUp(queue);
      }
    });
  },
});

Deno.test({
  name:
    "deno task gateway behind a trusted proxy: the right-most untrusted X-Forwarded-For address is the client in its log and its failed-authentication limit",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("gw_proxy");
    await withTempDir(async (dir) => {
      const registry = `${dir}/registry.yaml`;
      await Deno.writeTextFile(registry, `functions:\n  task_a: { queue: ${queue} }\n`);
      const keysFile = `${dir}/gateway_keys.json`;
      const { key } = await keys(keysFile, "add", "--functions", "task_a");
      const { gateway, base } = await startGateway(registry, keysFile, [
        "--trusted-proxies",
        "127.0.0.1/32,::1",
        "--access-log",
        "--keys-poll-ms",
        "100",
      ]);
      const from = (address: string) => ({ "x-forwarded-for": `6.6.6.6, ${address}` });
      try {
        assert.equal((await status(base, "/openapi.json", key, from("203.0.113.9"))).status, 200);
        await gateway.waitForLine(/^203\.0\.113\.9 GET \/openapi\.json 200$/);

        // A flood of wrong keys from one address, each with another forged left entry:
        // 20 at once are allowed, then one every 5 s.
        const wrong = key.slice(0, -2) + "xx";
        const answers: number[] = [];
        while (answers.at(-1) !== 429 && answers.length < 40) {
          const answer = await status(base, "/openapi.json", wrong, {
            "x-forwarded-for": `10.0.0.${answers.length}, 203.0.113.10`,
          });
          answers.push(answer.status);
        }
        assert.equal(answers.at(-1), 429, answers.join(","));
        assert.ok(answers.slice(0, 20).every((code) => code === 401), answers.join(","));
        const refused = await status(base, "/openapi.json", key, from("203.0.113.10"));
        assert.equal(refused.status, 429, JSON.stringify(refused.body));
        assert.equal(refused.body.error, "too_many_failures");
        assert.ok(Number(refused.headers.get("retry-after")) >= 1);
        await gateway.waitForLine(/gateway: 203\.0\.113\.10 failed authentication too often/);
        assert.equal((await status(base, "/openapi.json", key, from("203.0.113.11"))).status, 200);
        assert.equal(
          (await status(base, "/openapi.json", wrong, from("203.0.113.11"))).status,
          401,
        );

        // The keys file looked at every 100 ms: a new key works with no signal.
        const added = await keys(keysFile, "add", "--functions", "task_a");
        await waitFor(
          async () =>
            (await status(base, "/openapi.json", added.key, from("203.0.113.12"))).status === 200,
          "the added key to be taken",
          10_000,
          50,
        );
      } finally {
        await gateway.stop();
        await cleanUp(queue);
      }
    });
  },
});

Deno.test({
  name:
    "deno task gateway signs each callback with --callback-secret-file: Gateway-Signature is HMAC-SHA256 of '<t>.<body>'",
  ignore: NEEDS_RABBITMQ,
  async fn() {
    const queue = uniqueName("gw_signed");
    await withTempDir(async (dir) => {
      const registry = `${dir}/registry.yaml`;
      await Deno.writeTextFile(registry, `functions:\n  task_a: { queue: ${queue} }\n`);
      const keysFile = `${dir}/gateway_keys.json`;
      const { key } = await keys(keysFile, "add", "--functions", "task_a");
      const secretFile = `${dir}/callback.secret`;
      await Deno.writeTextFile(secretFile, "short\n");
      const refused = await runDeno(
        [
          ...GATEWAY_ARGS,
          "--registry",
          registry,
          "--keys-file",
          keysFile,
          "--callback-secret-file",
          secretFile,
        ],
        {},
        { timeoutMs: 60_000 },
      );
      assert.equal(refused.code, 2, "a short secret is a bad option");
      assert.match(refused.stderr, /at least 32 bytes/);
      const secret = "s".repeat(20) + crypto.randomUUID();
      await Deno.writeTextFile(secretFile, secret + "\n");

      const received = Promise.withResolvers<{ body: string; signature: string | null }>();
      const receiver = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (r) => {
        received.resolve({ body: await r.text(), signature: r.headers.get("gateway-signature") });
        return new Response(null, { status: 204 });
      });
      const worker = await startWorkerProcess("task_a", { AMQP_URL, QUEUE: queue });
      const { gateway, base } = await startGateway(registry, keysFile, [
        "--callback-hosts",
        "127.0.0.1",
        "--callback-allow-private",
        "--callback-secret-file",
        secretFile,
      ]);
      try {
        const accepted = await fetch(`${base}/functions/task_a`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${key}`,
            prefer: "respond-async",
            "callback-url": `http://127.0.0.1:${receiver.addr.port}/hook`,
          },
          body: "{}",
          signal: AbortSignal.timeout(30_000),
        });
        assert.equal(accepted.status, 202);
        const { id } = await accepted.json();
        let timer: ReturnType<typeof setTimeout> | undefined;
        const { body, signature } = await Promise.race([
          received.promise,
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error("no callback within 30 s")), 30_000);
          }),
        ]).finally(() => clearTimeout(timer));
        assert.equal(JSON.parse(body).id, id);
        assert.equal(JSON.parse(body).status, "success");
        const [, t, mac] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(signature ?? "")!;
        assert.ok(Math.abs(Date.now() / 1000 - Number(t)) < 300, "signed now");
        assert.equal(mac, createHmac("sha256", secret).update(`${t}.${body}`).digest("hex"));
      } finally {
        await gateway.stop();
        await worker.stop();
        await receiver.shutdown();
        await cleanUp(queue);
      }
    });
  },
});

Deno.test({
  name:
    "deliverCallback() over https connects to the checked address and still checks the URL's name against the certificate",
  ignore: NEEDS_OPENSSL,
  async fn() {
    await withTempDir(async (dir) => {
      const pki = await makeTestPki(dir, ["hooks.test"]);
      const hosts: string[] = [];
      const server = Deno.serve({
        hostname: "127.0.0.1",
        port: 0,
        cert: await Deno.readTextFile(pki.serverCert),
        key: await Deno.readTextFile(pki.serverKey),
        onListen() {},
      }, (request) => {
        hosts.push(request.headers.get("host") ?? "");
        return new Response(null, { status: 204 });
      });
      const lines: string[] = [];
      const options = {
        policy: { hosts: ["hooks.test", "other.test"], allowPrivate: true, brokerHosts: [] },
        // Neither name is in any DNS: only the checked address reaches the server.
        resolve: () => Promise.resolve(["127.0.0.1"]),
        attempts: 1,
        caCerts: [await Deno.readTextFile(pki.ca)],
        log: (line: string) => lines.push(line),
      };
      try {
        const port = server.addr.port;
        assert.equal(
          await deliverCallback(`https://hooks.test:${port}/d`, {}, "c1", options),
          true,
        );
        assert.deepEqual(hosts, [`hooks.test:${port}`]);
        // The certificate names hooks.test and 127.0.0.1, not other.test: refused.
        assert.equal(
          await deliverCallback(`https://other.test:${port}/d`, {}, "c2", options),
          false,
        );
        assert.equal(hosts.length, 1, lines.join("\n"));
        assert.match(lines.join("\n"), /callback for c2 failed: InvalidData/, "the certificate");
      } finally {
        await server.shutdown();
      }
    });
  },
});

Deno.test("docs/gateway.md's receiver takes a delivery's signature, and refuses a changed body, an old time and another secret", async () => {
  const page = await Deno.readTextFile(new URL("../docs/gateway.md", import.meta.url));
  const block = /```ts\n(async function verified[\s\S]*?)```/.exec(page)?.[1];
  assert.ok(block, "docs/gateway.md shows the receiver's check");
  const { verified } = await import(
    `data:application/typescript,${encodeURIComponent(`${block}\nexport { verified };`)}`
  );
  const secret = "r".repeat(40);
  const body = '{"id":"c1","status":"success"}';
  const now = Math.floor(Date.now() / 1000);
  assert.equal(await verified(secret, await signCallback(secret, now, body), body), true);
  assert.equal(await verified(secret, await signCallback(secret, now, body), body + " "), false);
  assert.equal(await verified(secret, await signCallback(secret, now - 301, body), body), false);
  assert.equal(await verified(secret + "x", await signCallback(secret, now, body), body), false);
  assert.equal(await verified(secret, null, body), false);
});
