import assert from "node:assert/strict";
import { parseWholeNumber, wholeNumberRange } from "./whole_number.ts";

Deno.test("parseWholeNumber() reads only decimal digits within the range", () => {
  assert.equal(parseWholeNumber("0"), 0);
  assert.equal(parseWholeNumber("42", 1, 100), 42);
  for (const text of ["", " 5", "5 ", "-1", "1e3", "0x10", "2.0", "abc", "9007199254740993"]) {
    assert.equal(parseWholeNumber(text), undefined, text);
  }
  assert.equal(parseWholeNumber("0", 1), undefined, "below min");
  assert.equal(parseWholeNumber("101", 1, 100), undefined, "above max");
});

Deno.test("wholeNumberRange() says the range as messages do", () => {
  assert.equal(wholeNumberRange(1), ">= 1");
  assert.equal(wholeNumberRange(1, 1024), "from 1 to 1024");
});
