import assert from "node:assert/strict";
import { escapeControls, escapeJsonControls } from "./terminal_text.ts";

/** An OSC title, a screen clear, fake text, hidden text, an 8-bit CSI and a bidi override. */
const HOSTILE = "\u001b]0;PWNED\u0007\u001b[2J\u001b[HAll clear\u001b[8m\u009b31m\u202egnp.exe";

Deno.test("escapeControls() writes out every control character and leaves the rest", () => {
  const shown = escapeControls(HOSTILE);
  assert.equal(
    shown,
    "\\u001b]0;PWNED\\u0007\\u001b[2J\\u001b[HAll clear\\u001b[8m\\u009b31m\\u202egnp.exe",
  );
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(shown, /[\u0000-\u001f\u007f-\u009f\u202e]/);
  assert.equal(escapeControls("two\nlines\tand\r"), "two\\nlines\\tand\\r");
  assert.equal(
    escapeControls("naïve ünïcödé, emoji 🎉, a \\ backslash"),
    "naïve ünïcödé, emoji 🎉, a \\ backslash",
  );
  assert.equal(escapeControls("\u0000\u007f\u2028\u2066"), "\\u0000\\u007f\\u2028\\u2066");
});

Deno.test("escapeJsonControls() leaves the same JSON, with no raw control character", () => {
  const value = { message: HOSTILE, nested: ["\u0085", "\u007f"] };
  const json = escapeJsonControls(JSON.stringify(value, null, 2));
  assert.deepEqual(JSON.parse(json), value);
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(json, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
  assert.ok(json.includes('\n  "message"'), "the indentation's newlines stay");
});
