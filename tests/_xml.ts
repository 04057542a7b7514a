/**
 * A small, strict XML reader for tests that check generated XML (JUnit
 * reports): elements, attributes, text, comments, CDATA and the predefined
 * and numeric entities. It throws a `SyntaxError` on anything that is not
 * well-formed, such as mismatched tags, a raw `<` or `&` in text, or a
 * repeated attribute, so a broken document cannot pass a test.
 *
 * @module
 */

/** An element: its name, attributes, child elements and text content. */
export interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  /** The element's own text (not its children's), entities decoded. */
  text: string;
}

const NAME = "[A-Za-z_:][-A-Za-z0-9_:.]*";
const ENTITIES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
};

function decode(raw: string, where: number): string {
  if (/<|&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.test(raw)) {
    throw new SyntaxError(`Cannot parse XML at ${where}: a raw '<' or '&'`);
  }
  return raw.replace(/&(#x[0-9a-fA-F]+|#\d+|\w+);/g, (_, entity: string) => {
    if (entity.startsWith("#x")) return String.fromCodePoint(parseInt(entity.slice(2), 16));
    if (entity.startsWith("#")) return String.fromCodePoint(Number(entity.slice(1)));
    return ENTITIES[entity];
  });
}

/** Parses a document and returns its root element. */
export function parseXml(text: string): XmlElement {
  let index = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`Cannot parse XML at ${index}: ${what}`);
  };
  const skipMisc = () => {
    while (true) {
      const rest = text.slice(index);
      const space = rest.match(/^\s+/);
      if (space) index += space[0].length;
      else if (rest.startsWith("<!--")) {
        const end = text.indexOf("-->", index);
        if (end === -1) fail("an unclosed comment");
        index = end + 3;
      } else return;
    }
  };
  const prolog = text.match(/^<\?xml[^?]*\?>/);
  if (prolog) index = prolog[0].length;
  skipMisc();

  const element = (): XmlElement => {
    const open = new RegExp(`^<(${NAME})`).exec(text.slice(index));
    if (!open) return fail("expected an element");
    index += open[0].length;
    const node: XmlElement = { name: open[1], attributes: {}, children: [], text: "" };
    const attribute = new RegExp(`^\\s+(${NAME})\\s*=\\s*("([^"]*)"|'([^']*)')`);
    while (true) {
      const match = attribute.exec(text.slice(index));
      if (!match) break;
      if (match[1] in node.attributes) fail(`attribute '${match[1]}' twice`);
      node.attributes[match[1]] = decode(match[3] ?? match[4], index);
      index += match[0].length;
    }
    const end = /^\s*(\/?)>/.exec(text.slice(index));
    if (!end) return fail(`a malformed start tag <${node.name}>`);
    index += end[0].length;
    if (end[1] === "/") return node;
    while (true) {
      if (text.startsWith(`</`, index)) {
        const close = new RegExp(`^</(${NAME})\\s*>`).exec(text.slice(index));
        if (!close || close[1] !== node.name) fail(`expected </${node.name}>`);
        index += close![0].length;
        return node;
      }
      if (text.startsWith("<!--", index)) {
        skipMisc();
      } else if (text.startsWith("<![CDATA[", index)) {
        const close = text.indexOf("]]>", index);
        if (close === -1) fail("an unclosed CDATA section");
        node.text += text.slice(index + 9, close);
        index = close + 3;
      } else if (text.startsWith("<", index)) {
        node.children.push(element());
      } else {
        const next = text.indexOf("<", index);
        if (next === -1) fail(`an unclosed <${node.name}>`);
        node.text += decode(text.slice(index, next), index);
        index = next;
      }
    }
  };

  const root = element();
  skipMisc();
  if (index !== text.length) fail("content after the root element");
  return root;
}

/** Every descendant element named `name`, depth first. */
export function findAll(element: XmlElement, name: string): XmlElement[] {
  return element.children.flatMap((child) => [
    ...(child.name === name ? [child] : []),
    ...findAll(child, name),
  ]);
}
