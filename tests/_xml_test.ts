import assert from "node:assert/strict";
import { findAll, parseXml } from "./_xml.ts";

Deno.test("parseXml() reads elements, attributes, text and entities", () => {
  const root = parseXml(
    `<?xml version="1.0"?>\n<!-- c --><a x="1 &amp; 2" y='&#10;'><b>t&lt;&#x41;</b><b/><![CDATA[<raw>]]></a>\n`,
  );
  assert.equal(root.name, "a");
  assert.deepEqual(root.attributes, { x: "1 & 2", y: "\n" });
  assert.equal(root.text, "<raw>");
  const bs = findAll(root, "b");
  assert.equal(bs.length, 2);
  assert.equal(bs[0].text, "t<A");
});

Deno.test("parseXml() refuses documents that are not well-formed", () => {
  for (
    const text of [
      "<a><b></a></b>",
      "<a>1 < 2</a>",
      "<a>fish & chips</a>",
      '<a x="1" x="2"/>',
      "<a>",
      "<a/><b/>",
      '<a x="<"/>',
      "<a x=1/>",
    ]
  ) {
    assert.throws(() => parseXml(text), SyntaxError, text);
  }
});
