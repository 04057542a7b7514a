/**
 * The house's floors, held by construction: each folder may import only from
 * its own floor's folder and the floors below, so a change that makes an
 * import run up a floor (or closes a circle of files) fails here, naming the
 * file, the import and the fix. docs/development.md draws the same floors.
 */

import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";

const ROOT = normalize(join(dirname(new URL(import.meta.url).pathname), ".."));

/** Floor of each top-level folder: a folder imports only folders of a lower floor, and itself. */
export const FLOORS: Record<string, number> = {
  core: 1,
  runtime: 2,
  functions: 3,
  client: 3,
  ops: 3,
  dispatcher: 4,
  dashboard: 5,
  gateway: 5,
  scheduler: 5,
  bench: 6,
  examples: 6,
};

/** Imports a folder may make besides the floors below it: none today. */
const SPECIFIERS =
  /(?:^|\n)\s*(?:import|export)\b[^"'`;]*?\bfrom\s*["']([^"']+)["']|(?:^|\n)\s*import\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']/g;

async function* sourceFiles(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(join(ROOT, dir))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) {
      if (entry.name === "node_modules" || entry.name === "fixtures") continue;
      yield* sourceFiles(path);
    } else if (/\.(ts|mjs|js)$/.test(entry.name) && !/_test\.ts$/.test(entry.name)) {
      yield path;
    }
  }
}

function topOf(path: string): string {
  return path.split("/")[0];
}

interface Import {
  from: string;
  to: string;
  specifier: string;
}

async function importsOf(): Promise<Import[]> {
  const found: Import[] = [];
  for (const top of Object.keys(FLOORS)) {
    try {
      await Deno.stat(join(ROOT, top));
    } catch {
      continue;
    }
    for await (const file of sourceFiles(top)) {
      const text = await Deno.readTextFile(join(ROOT, file));
      for (const match of text.matchAll(SPECIFIERS)) {
        const specifier = match[1] ?? match[2] ?? match[3];
        let to: string | undefined;
        if (specifier.startsWith(".")) to = relative(ROOT, join(ROOT, dirname(file), specifier));
        else if (specifier === "@task-system/runtime") to = "runtime/mod.ts";
        else if (specifier === "@task-system/client") to = "client/mod.ts";
        if (to !== undefined) found.push({ from: file, to, specifier });
      }
    }
  }
  return found;
}

Deno.test("no import runs up a floor: core < runtime < functions, client, ops < dispatcher < dashboard < bench", async () => {
  const upward: string[] = [];
  for (const { from, to, specifier } of await importsOf()) {
    const [a, b] = [topOf(from), topOf(to)];
    if (a === b) continue;
    const [fa, fb] = [FLOORS[a], FLOORS[b]];
    if (fb === undefined || fb >= fa) {
      upward.push(
        `${from} imports ${specifier} (${b}/, floor ${
          fb ?? "none"
        }) from floor ${fa}: move the shared code down to ${fa > 1 ? "a lower floor" : "core/"}`,
      );
    }
  }
  assert.deepEqual(upward, []);
});

Deno.test("no circle of files: no module imports itself back through others", async () => {
  const edges = new Map<string, Set<string>>();
  for (const { from, to } of await importsOf()) {
    if (!edges.has(from)) edges.set(from, new Set());
    edges.get(from)!.add(to);
  }
  const circles: string[] = [];
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (file: string) => {
    state.set(file, "open");
    path.push(file);
    for (const next of edges.get(file) ?? []) {
      if (state.get(next) === "open") {
        circles.push([...path.slice(path.indexOf(next)), next].join(" -> "));
      } else if (!state.has(next)) visit(next);
    }
    path.pop();
    state.set(file, "done");
  };
  for (const file of edges.keys()) if (!state.has(file)) visit(file);
  assert.deepEqual(circles, [], "move what both files need into a third, lower one");
});

Deno.test("a function imports only the runtime's public face", async () => {
  const wrong = (await importsOf())
    .filter(({ from, to }) =>
      topOf(from) === "functions" && !to.startsWith("functions/") && to !== "runtime/mod.ts"
    )
    .map(({ from, specifier }) =>
      `${from} imports ${specifier}: import "@task-system/runtime" instead`
    );
  assert.deepEqual(wrong, []);
});
