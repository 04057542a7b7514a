import assert from "node:assert/strict";
import { main, parsePublicOrigin } from "./main.ts";
import { UsageError } from "../dispatcher/cli/options.ts";

Deno.test("parsePublicOrigin() takes an http(s) origin and nothing more", () => {
  assert.equal(parsePublicOrigin("https://dash.example.com"), "https://dash.example.com");
  assert.equal(
    parsePublicOrigin("https://dash.example.com:8443/"),
    "https://dash.example.com:8443",
  );
  assert.equal(parsePublicOrigin("https://Dash.Example.com:443"), "https://dash.example.com");
  for (
    const bad of [
      "dash.example.com",
      "ftp://dash.example.com",
      "https://dash.example.com/dashboard",
      "https://user:pw@dash.example.com",
      "https://dash.example.com/?x=1",
    ]
  ) {
    assert.throws(() => parsePublicOrigin(bad), UsageError, bad);
  }
});

Deno.test("deno task dashboard refuses a bad --public-origin with exit code 2", async () => {
  const err: string[] = [];
  const code = await main(["--public-origin", "https://dash.example.com/sub"], {
    out: () => {},
    err: (line) => err.push(line),
    env: () => undefined,
    stop: Promise.resolve(),
  });
  assert.equal(code, 2);
  assert.match(err.join("\n"), /^Cannot use --public-origin 'https:\/\/dash\.example\.com\/sub'/);
});
