import assert from "node:assert/strict";
import { ConfigError } from "../config_error.ts";
import { SecretFileError } from "./secret_file.ts";
import {
  type BrokerSettingNames,
  type BrokerSettings,
  DEFAULT_BROKER_URL,
  resolveBrokerTarget,
  stackPasswordFile,
} from "./target.ts";

const FLAGS: BrokerSettingNames = {
  url: "--broker",
  passwordFile: "--password-file",
  caFile: "--ca-file",
  certFile: "--cert-file",
  keyFile: "--key-file",
};

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
/** As a command-line tool of the dispatcher resolves its flags. */
const resolve = (settings: BrokerSettings, root: URL, env = envOf({})) =>
  resolveBrokerTarget({ settings, names: FLAGS, env, root, stackUser: "dispatcher" });

Deno.test("resolveBrokerTarget() without settings or stack password probes guest on localhost", async () => {
  await withRoot({}, async (root) => {
    assert.deepEqual(await resolve({}, root), {
      url: DEFAULT_BROKER_URL,
      label: "amqp://guest:***@localhost:5672",
      user: "guest",
      explicit: false,
      tls: undefined,
      passwordFile: undefined,
      files: [],
      names: {
        caFile: "--ca-file or AMQP_CA_FILE",
        certFile: "--cert-file or AMQP_CERT_FILE",
        keyFile: "--key-file or AMQP_KEY_FILE",
      },
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
    const resolved = await resolveBrokerTarget({ env: envOf({}), root, stackUser: "operator" });
    assert.equal(resolved.user, "operator");
    assert.equal(password(resolved.url), "op-pw");
  });
});

Deno.test("resolveBrokerTarget() finds the stack password in SECRETS_DIR, relative to the project", async () => {
  await withRoot({ "elsewhere/dispatcher.password": "pw2" }, async (root, dir) => {
    assert.equal(
      stackPasswordFile(envOf({ SECRETS_DIR: "elsewhere" }), root, "dispatcher"),
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
        stackUser: "dispatcher",
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

// A worker: variables only, no stack password.
const worker = (vars: Record<string, string>) => resolveBrokerTarget({ env: envOf(vars) });

Deno.test("resolveBrokerTarget() for a worker looks for no stack password and reads no SECRETS_DIR", async () => {
  const asked: string[] = [];
  const target = await resolveBrokerTarget({
    env: (name) => {
      asked.push(name);
      return undefined;
    },
  });
  assert.equal(target.url, DEFAULT_BROKER_URL);
  assert.deepEqual(target.files, []);
  assert.ok(!asked.includes("SECRETS_DIR"), `asked ${asked.join(", ")}`);
});

Deno.test("resolveBrokerTarget() puts the password file's content into the URL, encoded", async () => {
  const secret = "p@ss:w/rd%41 x";
  await withRoot({ pw: `${secret}\n` }, async (_root, dir) => {
    const target = await worker({
      AMQP_URL: "amqp://task_a@rabbitmq:5672/",
      AMQP_PASSWORD_FILE: `${dir}/pw`,
    });
    const url = new URL(target.url);
    assert.equal(url.username, "task_a");
    assert.equal(decodeURIComponent(url.password), secret);
    assert.equal(url.host, "rabbitmq:5672");
    assert.deepEqual(target.files, [`${dir}/pw`]);
    assert.equal(target.label, "amqp://task_a:***@rabbitmq:5672");
  });
});

Deno.test("resolveBrokerTarget() reads the whole URL from a file", async () => {
  await withRoot({ url: "amqps://task_a:s3cret@rabbitmq:5671\n" }, async (_root, dir) => {
    const target = await worker({ AMQP_URL_FILE: `${dir}/url` });
    assert.equal(target.url, "amqps://task_a:s3cret@rabbitmq:5671");
    assert.equal(target.explicit, true);
    assert.deepEqual(target.files, [`${dir}/url`]);
  });
});

Deno.test("resolveBrokerTarget() refuses a worker's variables that contradict each other, by name", async () => {
  await withRoot({ pw: "s3cret", url: "amqp://u:p@h", pem: "PEM" }, async (_root, dir) => {
    await assert.rejects(
      worker({ AMQP_URL: "amqp://h:5672", AMQP_PASSWORD_FILE: `${dir}/pw` }),
      new ConfigError(
        "Cannot use AMQP_PASSWORD_FILE as the URL of AMQP_URL names no user: put the user in it, as in amqp://task_a@rabbitmq:5672",
      ),
    );
    await assert.rejects(
      worker({ AMQP_URL: "amqp://u:inline@h:5672", AMQP_CA_FILE: `${dir}/pem` }),
      new ConfigError(
        "Cannot use AMQP_CA_FILE with 'amqp://u:***@h:5672' as that connection is not encrypted: use amqps:// (RabbitMQ listens for TLS on 5671), or unset AMQP_CA_FILE",
      ),
    );
    await assert.rejects(
      worker({ AMQP_URL: "amqps://u@h", AMQP_CERT_FILE: `${dir}/pem` }),
      new ConfigError("Cannot use AMQP_CERT_FILE without AMQP_KEY_FILE: set both, or neither"),
    );
    await assert.rejects(
      resolve({ url: "amqps://u@h", certFile: `${dir}/pem` }, new URL("file:///nonexistent/")),
      new ConfigError(
        "Cannot use --cert-file without --key-file or AMQP_KEY_FILE: set both, or neither",
      ),
    );
    await assert.rejects(
      worker({ AMQP_URL: "http://h" }),
      new ConfigError(
        "Cannot use AMQP_URL as 'http://h' uses 'http:': use amqp://, amqps:// or memory://",
      ),
    );
    await assert.rejects(worker({ AMQP_URL: "nonsense" }), /AMQP_URL as 'nonsense' is not a URL/);
    await assert.rejects(worker({ AMQP_URL: " , " }), /Cannot use AMQP_URL as it is empty/);
  });
});

Deno.test("resolveBrokerTarget() reads the TLS files of an amqps:// URL as they are", async () => {
  await withRoot({ ca: "CA\n", cert: "CERT\n", key: "KEY\n" }, async (_root, dir) => {
    const target = await worker({
      AMQP_URL: "amqps://u@h:5671",
      AMQP_CA_FILE: `${dir}/ca`,
      AMQP_CERT_FILE: `${dir}/cert`,
      AMQP_KEY_FILE: `${dir}/key`,
    });
    assert.deepEqual(target.tls, {
      ca: { pem: "CA\n", setting: "AMQP_CA_FILE", path: `${dir}/ca` },
      cert: { pem: "CERT\n", setting: "AMQP_CERT_FILE", path: `${dir}/cert` },
      key: { pem: "KEY\n", setting: "AMQP_KEY_FILE", path: `${dir}/key` },
    });
    assert.deepEqual(target.files, [`${dir}/ca`, `${dir}/cert`, `${dir}/key`]);
    assert.deepEqual(target.names, {
      caFile: "AMQP_CA_FILE",
      certFile: "AMQP_CERT_FILE",
      keyFile: "AMQP_KEY_FILE",
    });
  });
});

Deno.test("resolveBrokerTarget() names the setting of a file it cannot read, never its content", async () => {
  const error = await worker({
    AMQP_URL: "amqp://u@h",
    AMQP_PASSWORD_FILE: "/nonexistent/amqp_password",
  }).catch((e) => e);
  assert.ok(error instanceof SecretFileError);
  assert.match(error.message, /^Cannot read AMQP_PASSWORD_FILE as '\/nonexistent\/amqp_password'/);
});

Deno.test("resolveBrokerTarget() takes an in-process broker's memory:// URL", async () => {
  const target = await worker({ AMQP_URL: "memory://task_a@local-test" });
  assert.equal(target.user, "task_a");
  assert.equal(target.label, "memory://task_a@local-test");
});
