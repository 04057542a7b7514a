import assert from "node:assert/strict";
import { main } from "./main.ts";

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
