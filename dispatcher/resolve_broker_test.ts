import assert from "node:assert/strict";
import { LOCAL_AMQP_URL } from "./choose_broker.ts";
import { resolveBroker, stackPasswordFile } from "./resolve_broker.ts";

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

Deno.test("resolveBroker() without settings or stack password probes guest on localhost", async () => {
  await withRoot({}, async (root) => {
    const resolved = await resolveBroker({}, { env: envOf({}), root });
    assert.deepEqual(resolved, {
      url: LOCAL_AMQP_URL,
      explicit: false,
      tls: undefined,
      passwordFile: undefined,
    });
  });
});

Deno.test("resolveBroker() without settings connects as the compose stack's dispatcher", async () => {
  await withRoot({ "secrets/dispatcher.password": "stack-pw\n" }, async (root, dir) => {
    const resolved = await resolveBroker({}, { env: envOf({}), root });
    assert.equal(resolved.explicit, false, "falls back to embedded when the stack is down");
    assert.equal(new URL(resolved.url).username, "dispatcher");
    assert.equal(new URL(resolved.url).host, "localhost:5672");
    assert.equal(password(resolved.url), "stack-pw");
    assert.equal(resolved.passwordFile, `${dir}/secrets/dispatcher.password`);
  });
});

Deno.test("resolveBroker() finds the stack password in SECRETS_DIR, relative to the project", async () => {
  await withRoot({ "elsewhere/dispatcher.password": "pw2" }, async (root, dir) => {
    assert.equal(
      stackPasswordFile({ env: envOf({ SECRETS_DIR: "elsewhere" }), root }),
      `${dir}/elsewhere/dispatcher.password`,
    );
    const resolved = await resolveBroker({}, {
      env: envOf({ SECRETS_DIR: `${dir}/elsewhere/` }),
      root: new URL("file:///nonexistent/"),
    });
    assert.equal(password(resolved.url), "pw2");
  });
});

Deno.test("resolveBroker() gives the stack password to a URL for the dispatcher without one", async () => {
  await withRoot({ "secrets/dispatcher.password": "stack-pw" }, async (root) => {
    const env = envOf({});
    const named = await resolveBroker({ broker: "amqp://dispatcher@localhost:5673" }, {
      env,
      root,
    });
    assert.equal(named.explicit, true);
    assert.equal(password(named.url), "stack-pw");
    const anonymous = await resolveBroker({ broker: "amqp://127.0.0.1:5673" }, { env, root });
    assert.equal(new URL(anonymous.url).username, "dispatcher");
    assert.equal(password(anonymous.url), "stack-pw");
    const other = await resolveBroker({ broker: "amqp://ops@remote:5672" }, { env, root });
    assert.equal(other.url, "amqp://ops@remote:5672", "another user's password is not guessed");
    assert.equal(other.passwordFile, undefined);
    const inline = await resolveBroker({ broker: "amqp://dispatcher:given@h" }, { env, root });
    assert.equal(password(inline.url), "given");
  });
});

Deno.test("resolveBroker() prefers flags to variables and variables to the stack", async () => {
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
    const fromEnv = await resolveBroker({}, { env, root });
    assert.equal(new URL(fromEnv.url).host, "from-file:5671");
    assert.equal(password(fromEnv.url), "env-pw");
    assert.equal(fromEnv.tls?.ca?.pem, "ENV CA");
    assert.equal(fromEnv.tls?.ca?.setting, "AMQP_CA_FILE");
    const fromFlags = await resolveBroker({
      broker: "amqps://dispatcher@flag-host:5671",
      passwordFile: `${dir}/flag.pw`,
      caFile: `${dir}/ca.pem`,
    }, { env, root });
    assert.equal(new URL(fromFlags.url).host, "flag-host:5671", "--broker wins over AMQP_URL_FILE");
    assert.equal(password(fromFlags.url), "flag-pw");
    assert.deepEqual(fromFlags.tls?.ca, { pem: "CA", setting: "--ca-file", path: `${dir}/ca.pem` });
    assert.equal(fromFlags.passwordFile, `${dir}/flag.pw`);
  });
});

Deno.test("resolveBroker() refuses contradicting variables", async () => {
  await withRoot({ url: "amqp://u:p@h" }, async (root, dir) => {
    await assert.rejects(
      resolveBroker({}, {
        env: envOf({ AMQP_URL: "amqp://u@h", AMQP_URL_FILE: `${dir}/url` }),
        root,
      }),
      new TypeError("Cannot choose the broker as both AMQP_URL and AMQP_URL_FILE are set: set one"),
    );
  });
});
