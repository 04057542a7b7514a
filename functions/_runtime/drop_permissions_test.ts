import assert from "node:assert/strict";

Deno.test("dropPermissions() leaves the process unable to read the files and variables it named", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/secret`, "s3cret");
    await Deno.writeTextFile(`${dir}/other`, "not secret");
    const module = new URL("./drop_permissions.ts", import.meta.url).href;
    await Deno.writeTextFile(
      `${dir}/main.ts`,
      `import { dropPermissions } from ${JSON.stringify(module)};
      const attempt = (what, fn) => {
        try { fn(); console.log(what, "allowed"); } catch (e) { console.log(what, e.name); }
      };
      attempt("secret before", () => Deno.readTextFileSync(${JSON.stringify(`${dir}/secret`)}));
      dropPermissions({ files: [${JSON.stringify(`${dir}/secret`)}], variables: ["SECRET_VAR"] });
      attempt("secret after", () => Deno.readTextFileSync(${JSON.stringify(`${dir}/secret`)}));
      attempt("other after", () => Deno.readTextFileSync(${JSON.stringify(`${dir}/other`)}));
      attempt("variable after", () => Deno.env.get("SECRET_VAR"));
      attempt("kept variable after", () => Deno.env.get("KEPT_VAR"));
      attempt("hostname after", () => Deno.hostname());`,
    );
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        `--allow-read=${dir}/secret,${dir}/other`,
        "--allow-env=SECRET_VAR,KEPT_VAR",
        "--allow-sys=hostname",
        `${dir}/main.ts`,
      ],
      env: { NO_COLOR: "1", SECRET_VAR: "x", KEPT_VAR: "y" },
    }).output();
    const text = new TextDecoder().decode(output.stdout);
    assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    assert.deepEqual(text.trim().split("\n"), [
      "secret before allowed",
      "secret after NotCapable",
      "other after allowed",
      "variable after NotCapable",
      "kept variable after allowed",
      "hostname after NotCapable",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
