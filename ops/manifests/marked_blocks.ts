/**
 * The generated parts of a hand-written file: each sits between two marker
 * comments, and only what is between them is rewritten. The opening marker
 * sets the block's indentation, so a block can be a list inside a service
 * as well as services themselves:
 *
 * ```yaml
 *   # >>> workers: generated from functions/registry.yaml by 'deno task manifests', do not edit
 *   worker-a: ...
 *   # <<< workers
 * ```
 *
 * @module
 */

/** The file a block's marker comments say it comes from. */
export const REGISTRY_SOURCE = "functions/registry.yaml";

/** The opening marker of block `name`, without its indentation. */
export function openingMarker(name: string): string {
  return `# >>> ${name}: generated from ${REGISTRY_SOURCE} by 'deno task manifests', do not edit`;
}

/** The closing marker of block `name`, without its indentation. */
export function closingMarker(name: string): string {
  return `# <<< ${name}`;
}

/**
 * `text` with the lines between the markers of each block of `blocks`
 * replaced by that block's lines, indented as its opening marker. Throws a
 * `TypeError` naming `file` and the fix when a block's markers are missing
 * or out of order.
 */
export function replaceMarkedBlocks(
  text: string,
  file: string,
  blocks: Readonly<Record<string, readonly string[]>>,
): string {
  let lines = text.split("\n");
  for (const [name, block] of Object.entries(blocks)) {
    const open = lines.findIndex((line) => line.trim() === openingMarker(name));
    const close = lines.findIndex((line, i) => i > open && line.trim() === closingMarker(name));
    if (open === -1 || close === -1) {
      throw new TypeError(
        `Cannot generate the '${name}' block of ${file} as its markers ('${
          openingMarker(name)
        }' and '${closingMarker(name)}') are missing: restore them from git`,
      );
    }
    const indent = lines[open].slice(0, lines[open].length - lines[open].trimStart().length);
    const body = block.map((line) => line === "" ? "" : indent + line);
    lines = [...lines.slice(0, open + 1), ...body, ...lines.slice(close)];
  }
  return lines.join("\n");
}
