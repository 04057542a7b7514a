import assert from "node:assert/strict";
import { readSecretFile, SecretFileError } from "./secret_file.ts";
import { withTempDir } from "../../tests/_temp_dir.ts";

Deno.test("readSecretFile() returns the content without the trailing line break", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/pw`, "s3cret value\n");
    assert.equal(await readSecretFile(`${dir}/pw`, "AMQP_PASSWORD_FILE"), "s3cret value");
    await Deno.writeTextFile(`${dir}/ca.pem`, "-----BEGIN-----\nx\n");
    assert.equal(
      await readSecretFile(`${dir}/ca.pem`, "AMQP_CA_FILE", { trim: false }),
      "-----BEGIN-----\nx\n",
    );
  });
});

Deno.test("readSecretFile() names the setting, the file and the fix for a missing file", async () => {
  await withTempDir(async (dir) => {
    const error = await readSecretFile(`${dir}/nope`, "AMQP_PASSWORD_FILE").catch((e) => e);
    assert.ok(error instanceof SecretFileError);
    assert.equal(error.setting, "AMQP_PASSWORD_FILE");
    assert.equal(
      error.message,
      `Cannot read AMQP_PASSWORD_FILE as '${dir}/nope' does not exist: create it, or set AMQP_PASSWORD_FILE to the file that holds it`,
    );
  });
});

Deno.test("readSecretFile() refuses a directory and an empty file", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(
      readSecretFile(dir, "AMQP_URL_FILE"),
      new SecretFileError(
        "AMQP_URL_FILE",
        `Cannot read AMQP_URL_FILE as '${dir}' is a directory: name a file`,
      ),
    );
    await Deno.writeTextFile(`${dir}/empty`, "\n");
    await assert.rejects(
      readSecretFile(`${dir}/empty`, "--password-file"),
      /^SecretFileError: Cannot read --password-file as '.*\/empty' is empty: write the value into it$/,
    );
  });
});

Deno.test("readSecretFile() says how to allow a file this process may not read", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/pw`, "s3cret");
    const script = `
      import { readSecretFile } from ${
      JSON.stringify(new URL("./secret_file.ts", import.meta.url).href)
    };
      await readSecretFile(${
      JSON.stringify(`${dir}/pw`)
    }, "AMQP_PASSWORD_FILE", { notCapableHint: "a hint" })
        .catch((error) => console.log(error.name + ": " + error.message));
    `;
    await Deno.writeTextFile(`${dir}/main.ts`, script);
    // No --allow-read: the script may read nothing.
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", `${dir}/main.ts`],
      env: { NO_COLOR: "1" },
    }).output();
    const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
    assert.equal(
      text.trim(),
      `SecretFileError: Cannot read AMQP_PASSWORD_FILE as this process may not read '${dir}/pw': allow it with --allow-read=${dir}/pw (a hint)`,
    );
    assert.ok(!text.includes("s3cret"));
  });
});
