import assert from "node:assert/strict";
import { ConfigError } from "../core/config_error.ts";
import {
  type BrokerSettings,
  LOCAL_AMQP_URL,
  resolveBrokerTarget,
  stackPasswordFile,
} from "./broker_target.ts";

/** A project root with, optionally, the compose stack's dispatcher password. */
async function withRoot(
  files: Record<string, string>,
  fn: (root: URL, dir: string) => Promise<void>,
) {
  const dir = await Deno.makeTempDir();
  try {
    for (const [name, text] of Object.entries(files)) {
      await Deno.mkdir(`${dir}/${name}`.replace(/\/[^/]*$/, ""), { recursive: true });
      await Deno.writeTextFile(`${dir}/${name}`, text);
    }
    await fn(new URL(`file://${dir}/`), dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const envOf = (vars: Record<string, string>) => (name: string) => vars[name];
const password = (url: string) => decodeURIComponent(new URL(url).password);
const resolve = (settings: BrokerSettings, root: URL, env = envOf({})) =>
  resolveBrokerTarget({ settings, env, root });

Deno.test("resolveBrokerTarget() without settings or stack password probes guest on localhost", async () => {
  await withRoot({}, async (root) => {
    assert.deepEqual(await resolve({}, root), {
      url: LOCAL_AMQP_URL,
      label: "amqp://guest:***@localhost:5672",
      user: "guest",
      explicit: false,
      tls: undefined,
      passwordFile: undefined,
    });
  });
});

Deno.test("resolveBrokerTarget() without settings connects as the compose stack's dispatcher", async () => {
  await withRoot({ "secrets/dispatcher.password": "stack-pw\n" }, async (root, dir) => {
    const resolved = await resolve({}, root);
    assert.equal(resolved.explicit, false, "falls back to embedded when the stack is down");
    assert.equal(resolved.user, "dispatcher");
    assert.equal(new URL(resolved.url).host, "localhost:5672");
    assert.equal(password(resolved.url), "stack-pw");
    assert.equal(resolved.label, "amqp://dispatcher:***@localhost:5672");
    assert.equal(resolved.passwordFile, `${dir}/secrets/dispatcher.password`);
  });
});

Deno.test("resolveBrokerTarget() uses the stack password of the tool's own user", async () => {
  await withRoot({ "secrets/operator.password": "op-pw" }, async (root) => {
    const resolved = await resolveBrokerTarget({ env: envOf({}), root, user: "operator" });
    assert.equal(resolved.user, "operator");
    assert.equal(password(resolved.url), "op-pw");
  });
});

Deno.test("resolveBrokerTarget() finds the stack password in SECRETS_DIR, relative to the project", async () => {
  await withRoot({ "elsewhere/dispatcher.password": "pw2" }, async (root, dir) => {
    assert.equal(
      stackPasswordFile(envOf({ SECRETS_DIR: "elsewhere" }), root),
      `${dir}/elsewhere/dispatcher.password`,
    );
    const resolved = await resolve(
      {},
      new URL("file:///nonexistent/"),
      envOf({ SECRETS_DIR: `${dir}/elsewhere/` }),
    );
    assert.equal(password(resolved.url), "pw2");
  });
});

Deno.test("resolveBrokerTarget() gives the stack password only to a URL on this machine", async () => {
  await withRoot({ "secrets/dispatcher.password": "stack-pw" }, async (root) => {
    for (const url of ["amqp://dispatcher@localhost:5673", "amqp://127.0.0.1:5673"]) {
      const local = await resolve({ url }, root);
      assert.equal(local.explicit, true);
      assert.equal(new URL(local.url).username, "dispatcher", url);
      assert.equal(password(local.url), "stack-pw", url);
    }
    const ipv6 = await resolve({ url: "amqp://[::1]:5672" }, root);
    assert.equal(password(ipv6.url), "stack-pw");
    const cluster = await resolve({ url: "amqp://localhost:5672,amqp://127.0.0.1:5673" }, root);
    assert.deepEqual(cluster.url.split(",").map(password), ["stack-pw", "stack-pw"]);

    for (
      const url of [
        "amqp://dispatcher@broker.example:5672",
        "amqp://remote:5672",
        "amqp://localhost.evil.example:5672",
        "amqp://localhost:5672,amqp://remote:5672",
      ]
    ) {
      const remote = await resolve({ url }, root);
      assert.ok(!remote.url.includes("stack-pw"), `${url} gets no stack password`);
      assert.equal(remote.passwordFile, undefined, url);
    }
    const other = await resolve({ url: "amqp://ops@localhost:5672" }, root);
    assert.equal(other.url, "amqp://ops@localhost:5672", "another user's password is not guessed");
    const inline = await resolve({ url: "amqp://dispatcher:given@localhost" }, root);
    assert.equal(password(inline.url), "given");
  });
});

Deno.test("resolveBrokerTarget() prefers settings to variables and variables to the stack", async () => {
  await withRoot({
    "secrets/dispatcher.password": "stack-pw",
    "flag.pw": "flag-pw",
    "env.pw": "env-pw",
    "url": "amqps://dispatcher@from-file:5671",
    "ca.pem": "CA",
    "env-ca.pem": "ENV CA",
  }, async (root, dir) => {
    const env = envOf({
      AMQP_URL_FILE: `${dir}/url`,
      AMQP_PASSWORD_FILE: `${dir}/env.pw`,
      AMQP_CA_FILE: `${dir}/env-ca.pem`,
    });
    const fromEnv = await resolve({}, root, env);
    assert.equal(new URL(fromEnv.url).host, "from-file:5671");
    assert.equal(password(fromEnv.url), "env-pw");
    assert.equal(fromEnv.tls?.ca?.pem, "ENV CA");
    assert.equal(fromEnv.tls?.ca?.setting, "AMQP_CA_FILE");
    const fromFlags = await resolve(
      {
        url: "amqps://dispatcher@flag-host:5671",
        passwordFile: `${dir}/flag.pw`,
        caFile: `${dir}/ca.pem`,
      },
      root,
      env,
    );
    assert.equal(new URL(fromFlags.url).host, "flag-host:5671", "--broker wins over AMQP_URL_FILE");
    assert.equal(password(fromFlags.url), "flag-pw");
    assert.deepEqual(fromFlags.tls?.ca, { pem: "CA", setting: "--ca-file", path: `${dir}/ca.pem` });
    assert.equal(fromFlags.passwordFile, `${dir}/flag.pw`);
  });
});

Deno.test("resolveBrokerTarget() names the caller's settings and refuses contradicting ones", async () => {
  await withRoot({ url: "amqp://u:p@h" }, async (root, dir) => {
    await assert.rejects(
      resolve({}, root, envOf({ AMQP_URL: "amqp://u@h", AMQP_URL_FILE: `${dir}/url` })),
      new ConfigError(
        "Cannot choose the broker as both AMQP_URL and AMQP_URL_FILE are set: set one",
      ),
    );
    await assert.rejects(
      resolveBrokerTarget({
        settings: { url: "amqp://u:p@h", passwordFile: `${dir}/url` },
        root,
        names: {
          url: "url",
          passwordFile: "passwordFile",
          caFile: "caFile",
          certFile: "certFile",
          keyFile: "keyFile",
        },
      }),
      (error: Error) =>
        error instanceof ConfigError && /Cannot use passwordFile as/.test(error.message),
    );
  });
});
