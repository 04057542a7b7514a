/**
 * The worker process refuses bad broker settings at start, before it
 * connects anywhere: exit 2 with the setting, the file and the fix.
 */

import assert from "node:assert/strict";

const TASK_A = new URL("../task_a.ts", import.meta.url).pathname;

async function startWorker(env: Record<string, string>, allowRead = "") {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--allow-env",
      "--allow-net=127.0.0.1:1",
      "--allow-sys=hostname",
      ...(allowRead ? [`--allow-read=${allowRead}`] : []),
      TASK_A,
    ],
    env: { NO_COLOR: "1", ...env },
    clearEnv: true,
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, text: decoder.decode(output.stdout) + decoder.decode(output.stderr) };
}

Deno.test("serve() exits 2 naming AMQP_PASSWORD_FILE when its file does not exist", async () => {
  const { code, text } = await startWorker({
    AMQP_URL: "amqp://task_a@127.0.0.1:1",
    AMQP_PASSWORD_FILE: "/nonexistent/amqp_password",
  }, "/nonexistent");
  assert.equal(code, 2, text);
  assert.match(
    text,
    /^Cannot read AMQP_PASSWORD_FILE as '\/nonexistent\/amqp_password' does not exist: create it, or set AMQP_PASSWORD_FILE to the file that holds it$/m,
  );
});

Deno.test("serve() exits 2 saying where the worker image reads a file it may not read", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/ca.pem`, "not read");
    const { code, text } = await startWorker({
      AMQP_URL: "amqps://task_a:pw@127.0.0.1:1",
      AMQP_CA_FILE: `${dir}/ca.pem`,
    });
    assert.equal(code, 2, text);
    assert.match(
      text,
      new RegExp(
        `^Cannot read AMQP_CA_FILE as this process may not read '${dir}/ca.pem': allow it with --allow-read=${dir}/ca.pem \\(the worker image reads AMQP_CA_FILE only from /run/secrets/amqp_ca.pem: mount the file there\\)$`,
        "m",
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serve() exits 2 for contradicting settings and never prints the password", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/pw`, "file-s3cret");
    const { code, text } = await startWorker({
      AMQP_URL: "amqp://task_a:inline-s3cret@127.0.0.1:1",
      AMQP_PASSWORD_FILE: `${dir}/pw`,
    }, dir);
    assert.equal(code, 2, text);
    assert.match(
      text,
      /^Cannot use AMQP_PASSWORD_FILE as the URL of AMQP_URL has a password already/m,
    );
    assert.match(text, /^Worker settings are read from: AMQP_URL, AMQP_URL_FILE, /m);
    assert.ok(!/s3cret/.test(text), text);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
