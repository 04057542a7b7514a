import assert from "node:assert/strict";
import { resolveAmqpTarget } from "./amqp_target.ts";
import { SecretFileError } from "./secret_file.ts";

const DEFAULT = "amqp://guest:guest@localhost:5672";

async function withFiles(files: Record<string, string>, fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  try {
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/${name}`, text);
    }
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const env = (setting: string, value: string) => ({ setting, value });

Deno.test("resolveAmqpTarget() uses the default URL without settings", async () => {
  assert.deepEqual(await resolveAmqpTarget({}, { defaultUrl: DEFAULT }), {
    url: DEFAULT,
    files: [],
  });
});

Deno.test("resolveAmqpTarget() puts the password file's content into the URL, encoded", async () => {
  const password = "p@ss:w/rd%41 x";
  await withFiles({ pw: `${password}\n` }, async (dir) => {
    const target = await resolveAmqpTarget({
      url: env("AMQP_URL", "amqp://task_a@rabbitmq:5672/"),
      passwordFile: env("AMQP_PASSWORD_FILE", `${dir}/pw`),
    }, { defaultUrl: DEFAULT });
    const url = new URL(target.url);
    assert.equal(url.username, "task_a");
    assert.equal(decodeURIComponent(url.password), password);
    assert.equal(url.host, "rabbitmq:5672");
    assert.deepEqual(target.files, [`${dir}/pw`]);
  });
});

Deno.test("resolveAmqpTarget() reads the whole URL from a file", async () => {
  await withFiles({ url: "amqps://task_a:s3cret@rabbitmq:5671\n" }, async (dir) => {
    const target = await resolveAmqpTarget(
      { urlFile: env("AMQP_URL_FILE", `${dir}/url`) },
      { defaultUrl: DEFAULT },
    );
    assert.equal(target.url, "amqps://task_a:s3cret@rabbitmq:5671");
  });
});

Deno.test("resolveAmqpTarget() refuses settings that contradict each other", async () => {
  await withFiles({ pw: "s3cret", url: "amqp://u:p@h", pem: "PEM" }, async (dir) => {
    await assert.rejects(
      resolveAmqpTarget({
        url: env("AMQP_URL", "amqp://u@h"),
        urlFile: env("AMQP_URL_FILE", `${dir}/url`),
      }, { defaultUrl: DEFAULT }),
      new TypeError(
        "Cannot choose the broker as both AMQP_URL and AMQP_URL_FILE are set: set one",
      ),
    );
    await assert.rejects(
      resolveAmqpTarget({
        url: env("--broker", "amqp://u:inline@h"),
        passwordFile: env("--password-file", `${dir}/pw`),
      }, { defaultUrl: DEFAULT }),
      new TypeError(
        "Cannot use --password-file as the URL of --broker has a password already: remove it from the URL, or unset --password-file",
      ),
    );
    await assert.rejects(
      resolveAmqpTarget({
        url: env("AMQP_URL", "amqp://h:5672"),
        passwordFile: env("AMQP_PASSWORD_FILE", `${dir}/pw`),
      }, { defaultUrl: DEFAULT }),
      /names no user: put the user in it, as in amqp:\/\/task_a@rabbitmq:5672$/,
    );
    await assert.rejects(
      resolveAmqpTarget({
        url: env("AMQP_URL", "amqp://u:inline@h:5672"),
        caFile: env("AMQP_CA_FILE", `${dir}/pem`),
      }, { defaultUrl: DEFAULT }),
      new TypeError(
        "Cannot use AMQP_CA_FILE with 'amqp://u:***@h:5672' as that connection is not encrypted: use amqps:// (RabbitMQ listens for TLS on 5671), or unset AMQP_CA_FILE",
      ),
    );
    await assert.rejects(
      resolveAmqpTarget({
        url: env("AMQP_URL", "amqps://u@h"),
        certFile: env("--cert-file", `${dir}/pem`),
      }, {
        defaultUrl: DEFAULT,
        names: { caFile: "--ca-file", certFile: "--cert-file", keyFile: "--key-file" },
      }),
      new TypeError("Cannot use --cert-file without --key-file: set both, or neither"),
    );
    await assert.rejects(
      resolveAmqpTarget({ url: env("AMQP_URL", "http://h") }, { defaultUrl: DEFAULT }),
      new TypeError("Cannot use AMQP_URL as 'http://h' uses 'http:': use amqp:// or amqps://"),
    );
  });
});

Deno.test("resolveAmqpTarget() reads the TLS files of an amqps:// URL as they are", async () => {
  await withFiles({ ca: "CA\n", cert: "CERT\n", key: "KEY\n" }, async (dir) => {
    const target = await resolveAmqpTarget({
      url: env("AMQP_URL", "amqps://u@h:5671"),
      caFile: env("AMQP_CA_FILE", `${dir}/ca`),
      certFile: env("AMQP_CERT_FILE", `${dir}/cert`),
      keyFile: env("AMQP_KEY_FILE", `${dir}/key`),
    }, { defaultUrl: DEFAULT });
    assert.deepEqual(target.tls, {
      ca: { pem: "CA\n", setting: "AMQP_CA_FILE", path: `${dir}/ca` },
      cert: { pem: "CERT\n", setting: "AMQP_CERT_FILE", path: `${dir}/cert` },
      key: { pem: "KEY\n", setting: "AMQP_KEY_FILE", path: `${dir}/key` },
    });
    assert.deepEqual(target.files, [`${dir}/ca`, `${dir}/cert`, `${dir}/key`]);
  });
});

Deno.test("resolveAmqpTarget() names the setting of a file it cannot read, never its content", async () => {
  const error = await resolveAmqpTarget({
    url: env("AMQP_URL", "amqp://u@h"),
    passwordFile: env("AMQP_PASSWORD_FILE", "/nonexistent/amqp_password"),
  }, { defaultUrl: DEFAULT }).catch((e) => e);
  assert.ok(error instanceof SecretFileError);
  assert.match(error.message, /^Cannot read AMQP_PASSWORD_FILE as '\/nonexistent\/amqp_password'/);
});
