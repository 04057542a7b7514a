import assert from "node:assert/strict";
import { ensureCookie, ERLANG_COOKIE_FILE, generateCookie } from "./erlang_cookie.ts";
import { initSecrets } from "./secrets_init.ts";
import { withTempDir } from "../../tests/_temp_dir.ts";

Deno.test("generateCookie() makes 40 upper-case letters and digits, new each time", () => {
  const cookies = new Set(Array.from({ length: 50 }, generateCookie));
  assert.equal(cookies.size, 50);
  for (const cookie of cookies) assert.match(cookie, /^[A-Z0-9]{40}$/);
});

Deno.test("ensureCookie() makes the cookie once, readable by its owner only, then keeps it", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/${ERLANG_COOKIE_FILE}`;
    assert.equal(await ensureCookie(dir), "created");
    const cookie = await Deno.readTextFile(path);
    assert.match(
      cookie,
      /^[A-Z0-9]{40}$/,
      "no newline: Erlang would read it as part of the cookie",
    );
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o400);
    await Deno.chmod(path, 0o600);
    assert.equal(await ensureCookie(dir), "kept");
    assert.equal(await Deno.readTextFile(path), cookie);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600, "its mode is left alone");
    await Deno.writeTextFile(path, "\n");
    assert.equal(await ensureCookie(dir), "created", "an empty cookie is replaced");
    assert.notEqual(await Deno.readTextFile(path), cookie);
  });
});

Deno.test("initSecrets() makes the Erlang cookie and never prints it", async () => {
  await withTempDir(async (dir) => {
    const lines: string[] = [];
    const report = await initSecrets({ dir, functions: [], log: (line) => lines.push(line) });
    assert.equal(report.cookie, "created");
    const cookie = await Deno.readTextFile(`${dir}/${ERLANG_COOKIE_FILE}`);
    assert.ok(lines.some((line) => line.includes(`created ${ERLANG_COOKIE_FILE}`)));
    assert.ok(!lines.join("\n").includes(cookie));
    assert.equal((await initSecrets({ dir, functions: [], log: () => {} })).cookie, "kept");
  });
});

Deno.test("initSecrets() closes the secrets directory to everyone but its owner", async () => {
  await withTempDir(async (dir) => {
    await Deno.chmod(dir, 0o755);
    const lines: string[] = [];
    await initSecrets({ dir, functions: [], log: (line) => lines.push(line) });
    assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o700);
    assert.ok(lines.some((line) => line.includes("mode 0700")));
  });
});
