import assert from "node:assert/strict";

Deno.test("dropPermissions() takes away the secret files, every variable, the host name and writes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/secret`, "s3cret");
    await Deno.writeTextFile(`${dir}/other_secret`, "never read");
    await Deno.writeTextFile(`${dir}/code.ts`, "code");
    const module = new URL("./drop_permissions.ts", import.meta.url).href;
    await Deno.writeTextFile(
      `${dir}/main.ts`,
      `import { dropPermissions } from ${JSON.stringify(module)};
      const attempt = (what, fn) => {
        try { fn(); console.log(what, "allowed"); } catch (e) { console.log(what, e.name); }
      };
      attempt("secret before", () => Deno.readTextFileSync(${JSON.stringify(`${dir}/secret`)}));
      const left = dropPermissions({ files: [${JSON.stringify(`${dir}/secret`)}, ${
        JSON.stringify(`${dir}/other_secret`)
      }] });
      console.log("left readable", left.length);
      attempt("secret after", () => Deno.readTextFileSync(${JSON.stringify(`${dir}/secret`)}));
      attempt("other secret after", () => Deno.readTextFileSync(${
        JSON.stringify(`${dir}/other_secret`)
      }));
      attempt("code after", () => Deno.readTextFileSync(${JSON.stringify(`${dir}/code.ts`)}));
      attempt("variable after", () => Deno.env.get("SECRET_VAR"));
      attempt("other variable after", () => Deno.env.get("KEPT_VAR"));
      attempt("hostname after", () => Deno.hostname());
      attempt("write after", () => Deno.writeTextFileSync(${JSON.stringify(`${dir}/x`)}, "x"));`,
    );
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        `--allow-read=${dir}/secret,${dir}/other_secret,${dir}/code.ts,${dir}/main.ts`,
        "--allow-env=SECRET_VAR,KEPT_VAR",
        "--allow-sys=hostname",
        `--allow-write=${dir}`,
        `${dir}/main.ts`,
      ],
      env: { NO_COLOR: "1", SECRET_VAR: "x", KEPT_VAR: "y" },
    }).output();
    const text = new TextDecoder().decode(output.stdout);
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    assert.deepEqual(text.trim().split("\n"), [
      "secret before allowed",
      "left readable 0",
      "secret after NotCapable",
      "other secret after NotCapable",
      "code after allowed",
      "variable after NotCapable",
      "other variable after NotCapable",
      "hostname after NotCapable",
      "write after NotCapable",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
