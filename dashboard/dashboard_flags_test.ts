import assert from "node:assert/strict";
import { UsageError } from "../dispatcher/cli/options.ts";
import { parsePublicOrigin } from "./dashboard_flags.ts";

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
