/**
 * The docs stay true to the repository, mechanically: README.md stays an
 * introduction, every relative link and anchor in README.md and docs/
 * resolves, every page and heading the code names exists, every `deno task`
 * the docs mention exists, the worker variables of docs/operations.md are
 * exactly those the worker reads, and the examples of messages and
 * configuration parse as the code parses them. Unit level: files only.
 */

import assert from "node:assert/strict";
import {
  ADMIN_PERMISSIONS,
  celeryClientPermissions,
  celeryWorkerPermissions,
  DASHBOARD_PERMISSIONS,
  dispatcherPermissions,
  gatewayPermissions,
  OPERATOR_PERMISSIONS,
  schedulerPermissions,
  workerPermissions,
} from "../ops/rabbitmq/definitions.ts";
import { parseConfig } from "../dispatcher/config/load_config.ts";
import { loadRegistry, parseRegistry } from "../core/registry.ts";
import {
  parseCancel,
  parseCancelAnswer,
  parseReply,
  parseRequest,
  parseWorkerInfo,
} from "../core/contract/mod.ts";
import { WORKER_ENV_VARS, type WorkerEnvVar } from "../runtime/defaults.ts";
import { readWorkerSettings } from "../runtime/process/settings.ts";

const ROOT = new URL("../", import.meta.url);
const README_MAX_LINES = 250;

/** A Markdown file of the docs, by its path from the root. */
interface Page {
  path: string;
  text: string;
}

async function readPages(): Promise<Page[]> {
  const pages = [{ path: "README.md", text: await Deno.readTextFile(new URL("README.md", ROOT)) }];
  for await (const entry of Deno.readDir(new URL("docs/", ROOT))) {
    if (!entry.isFile || !entry.name.endsWith(".md")) continue;
    const path = `docs/${entry.name}`;
    pages.push({ path, text: await Deno.readTextFile(new URL(path, ROOT)) });
  }
  return pages.sort((a, b) => a.path.localeCompare(b.path));
}

const PAGES = await readPages();

/** The lines of `text` outside fenced code blocks, with their inline code removed. */
export function proseLines(text: string): string[] {
  const lines: string[] = [];
  let fenced = false;
  for (const line of text.split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) {
      fenced = !fenced;
      continue;
    }
    if (!fenced) lines.push(line.replace(/`[^`]*`/g, "``"));
  }
  return lines;
}

/** The headings of a Markdown text, as written (inline code marks kept). */
export function headingsOf(text: string): string[] {
  const headings: string[] = [];
  let fenced = false;
  for (const line of text.split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    const match = !fenced && line.match(/^#{1,6}\s+(.+?)\s*#*\s*$/);
    if (match) headings.push(match[1]);
  }
  return headings;
}

/** The anchors GitHub makes for `headings`: lower case, punctuation dropped, spaces to dashes. */
export function anchorsOf(headings: string[]): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const heading of headings) {
    const base = heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\p{M}\s_-]/gu, "")
      .replace(/\s/g, "-");
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    anchors.add(count === 0 ? base : `${base}-${count}`);
  }
  return anchors;
}

/** Every link target written `[text](target)` in the prose of `text`. */
export function linksOf(text: string): string[] {
  const links: string[] = [];
  for (const line of proseLines(text)) {
    for (const match of line.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) links.push(match[1]);
  }
  return links;
}

async function exists(url: URL): Promise<boolean> {
  try {
    await Deno.stat(url);
    return true;
  } catch {
    return false;
  }
}

/** What is wrong with `target`, linked from `page`; `undefined` when it resolves. */
async function brokenLink(page: Page, target: string): Promise<string | undefined> {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return undefined; // https:, mailto:
  const [path, anchor] = target.split("#", 2);
  const file = path === "" ? new URL(page.path, ROOT) : new URL(path, new URL(page.path, ROOT));
  if (!file.href.startsWith(ROOT.href)) return `${target} leaves the repository`;
  if (!(await exists(file))) return `${target}: no such file`;
  if (anchor === undefined) return undefined;
  if (!file.pathname.endsWith(".md")) {
    return `${target}: an anchor into a file that is not Markdown`;
  }
  const anchors = anchorsOf(headingsOf(await Deno.readTextFile(file)));
  return anchors.has(anchor) ? undefined : `${target}: no heading makes the anchor #${anchor}`;
}

/** The source files the docs check looks through: everything but the docs and this test. */
async function sourceFiles(dir = ROOT, prefix = ""): Promise<Page[]> {
  const skipped = new Set([".git", "node_modules", "results", "coverage", "docs", "secrets"]);
  const files: Page[] = [];
  for await (const entry of Deno.readDir(dir)) {
    const path = `${prefix}${entry.name}`;
    if (entry.isDirectory && !skipped.has(entry.name)) {
      files.push(...await sourceFiles(new URL(`${entry.name}/`, dir), `${path}/`));
    } else if (
      entry.isFile && path !== "README.md" && path !== "tests/docs_test.ts" &&
      /\.(ts|mjs|js|py|ya?ml|json|conf)$|^Dockerfile|^\.ci\/run$/.test(path) &&
      !path.endsWith(".lock")
    ) {
      files.push({ path, text: await Deno.readTextFile(new URL(entry.name, dir)) });
    }
  }
  return files;
}

/** `docs/<page>.md` and `README.md` named in `text`, each with the heading quoted after it. */
export function docReferencesOf(text: string): { page: string; heading?: string }[] {
  const pattern = /\b(docs\/[\w.-]+\.md|README(?:\.md)?)\b(?:,?\s*"([^"\n]+)")?/g;
  return [...text.matchAll(pattern)].map((match) => ({
    page: match[1].startsWith("README") ? "README.md" : match[1],
    heading: match[2],
  }));
}

/** The names of the tasks `deno task <name>` mentions in `text`. */
export function denoTasksOf(text: string): string[] {
  return [...text.matchAll(/\bdeno task\s+(?:(?:-q|--quiet)\s+)?([a-z][\w:-]*)/g)].map((m) => m[1]);
}

/** The variables named in the first column of the table under `## <heading>` of `text`. */
export function tableVariablesOf(text: string, heading: string): string[] {
  const start = text.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `a '## ${heading}' section`);
  const end = text.indexOf("\n## ", start + 1);
  const section = text.slice(start, end === -1 ? undefined : end);
  return [...section.matchAll(/^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|/gm)].map((m) => m[1]);
}

/** The fenced blocks of `language` in `text`. */
function codeBlocks(text: string, language: string): string[] {
  return [...text.matchAll(new RegExp("^```" + language + "\\n([\\s\\S]*?)^```", "gm"))]
    .map((m) => m[1]);
}

Deno.test("README.md stays an introduction: at most 250 lines", () => {
  const readme = PAGES.find((page) => page.path === "README.md")!;
  const lines = readme.text.trimEnd().split("\n").length;
  assert.ok(lines <= README_MAX_LINES, `README.md has ${lines} lines: move reference to docs/`);
});

Deno.test("README.md links every page of docs/", () => {
  const readme = PAGES.find((page) => page.path === "README.md")!;
  const linked = new Set(linksOf(readme.text).map((target) => target.split("#")[0]));
  const unlinked = PAGES.filter((page) => page.path !== "README.md" && !linked.has(page.path));
  assert.deepEqual(unlinked.map((page) => page.path), [], "pages README.md does not link");
});

Deno.test("every relative link of README.md and docs/ points to a file and heading that exist", async () => {
  const broken: string[] = [];
  for (const page of PAGES) {
    for (const target of linksOf(page.text)) {
      const problem = await brokenLink(page, target);
      if (problem) broken.push(`${page.path}: ${problem}`);
    }
  }
  assert.deepEqual(broken, []);
});

Deno.test("every docs page and quoted heading the code names exists", async () => {
  const missing: string[] = [];
  let found = 0;
  for (const file of await sourceFiles()) {
    for (const { page, heading } of docReferencesOf(file.text)) {
      found++;
      const url = new URL(page, ROOT);
      if (!(await exists(url))) {
        missing.push(`${file.path} names ${page}, which does not exist`);
        continue;
      }
      const headings = headingsOf(await Deno.readTextFile(url)).map((h) => h.replaceAll("`", ""));
      if (heading !== undefined && !headings.includes(heading)) {
        missing.push(`${file.path} names "${heading}" in ${page}, which has no such heading`);
      }
    }
  }
  assert.ok(found >= 5, `the code names docs pages (found ${found} references)`);
  assert.deepEqual(missing, []);
});

Deno.test("every `deno task` the docs mention exists in deno.json", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  const tasks = new Set(Object.keys(config.tasks));
  const unknown: string[] = [];
  for (const page of PAGES) {
    for (const name of denoTasksOf(page.text)) {
      if (!tasks.has(name)) unknown.push(`${page.path}: deno task ${name}`);
    }
  }
  assert.deepEqual(unknown, []);
});

Deno.test("docs/operations.md documents exactly the variables the worker reads", async () => {
  const text = await Deno.readTextFile(new URL("docs/operations.md", ROOT));
  const documented = tableVariablesOf(text, "Worker settings");
  const read = new Set<string>();
  readWorkerSettings((name: WorkerEnvVar) => {
    read.add(name);
    return undefined;
  });
  assert.equal(new Set(documented).size, documented.length, "each variable documented once");
  assert.deepEqual([...documented].sort(), [...WORKER_ENV_VARS].sort());
  for (const name of read) assert.ok(documented.includes(name), `${name} is read but undocumented`);
});

Deno.test("the configuration and registry examples in the docs are valid files", async () => {
  const registry = await loadRegistry(
    decodeURIComponent(new URL("functions/registry.yaml", ROOT).pathname),
  );
  let checked = 0;
  let registries = 0;
  for (const page of PAGES) {
    for (const block of codeBlocks(page.text, "yaml")) {
      if (/^functions:/m.test(block) && !/^scenarios:/m.test(block)) {
        parseRegistry(block, `${page.path} (example)`);
        registries++;
        continue;
      }
      if (!/^scenarios:/m.test(block)) continue;
      // As beside the repository's registry: the example's tasks call its functions.
      const config = parseConfig(block, `${page.path} (example)`, { registry });
      assert.ok(config.scenarios.size > 0);
      checked++;
    }
  }
  assert.ok(checked >= 2, `README.md and docs/configuration.md have examples (found ${checked})`);
  assert.ok(registries >= 1, `docs/functions.md has an example registry (found ${registries})`);
});

Deno.test("the wire contract's example messages parse as workers and callers parse them", async () => {
  const text = await Deno.readTextFile(new URL("docs/wire-contract.md", ROOT));
  const examples = codeBlocks(text, "json").map((block) => JSON.parse(block));
  const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
  const kinds: string[] = [];
  for (const example of examples) {
    if (example.kind === "pong") {
      kinds.push("pong");
      assert.ok(parseWorkerInfo(encode(example)).ok, "the pong");
    } else if (example.kind === "cancel") {
      kinds.push("cancel");
      const parsed = parseCancel({ body: encode(example), properties: {} });
      assert.ok(parsed.ok, parsed.ok ? "" : parsed.error.message);
    } else if (example.kind === "cancel_answer") {
      kinds.push("cancel_answer");
      assert.ok(parseCancelAnswer({ body: encode(example), properties: {} }).ok, "the answer");
    } else if ("status" in example) {
      kinds.push("reply");
      const parsed = parseReply(encode(example));
      assert.ok(parsed.ok, parsed.ok ? "" : parsed.error.message);
    } else {
      kinds.push("request");
      const parsed = parseRequest({
        body: encode(example),
        properties: { contentType: "application/json" },
      }, { task: example.task });
      assert.ok(parsed.ok, parsed.ok ? "" : parsed.error.message);
    }
  }
  assert.deepEqual(kinds.sort(), ["cancel", "cancel_answer", "pong", "reply", "request"]);
});

Deno.test("docs/security.md shows each user's permissions exactly as ops/rabbitmq/definitions.ts grants them", async () => {
  const text = await Deno.readTextFile(new URL("docs/security.md", ROOT));
  const rows = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const cells = line.split(/(?<!\\)\|/).slice(1, -1).map((cell) => cell.trim());
    if (cells.length !== 4 || !/^`[a-z_]+`$/.test(cells[0])) continue;
    // In a Markdown table a regular expression's `|` is written `\|`.
    rows.set(
      cells[0].slice(1, -1),
      cells.slice(1).map((c) => c.slice(1, -1).replaceAll("\\|", "|")),
    );
  }
  const granted = {
    // task_a of functions/registry.yaml has triggers: it reads the events exchange.
    task_a: workerPermissions("queue_a", { triggers: ["demo.greet"] }),
    dispatcher: dispatcherPermissions(["queue_a", "queue_b", "queue_c"]),
    operator: OPERATOR_PERMISSIONS,
    dashboard: DASHBOARD_PERMISSIONS,
    celery_client: celeryClientPermissions(["queue_a", "queue_b"]),
    task_c: celeryWorkerPermissions("queue_c"),
    scheduler: schedulerPermissions(["queue_a"]),
    gateway: gatewayPermissions(["queue_a", "queue_b", "queue_c"]),
    admin: ADMIN_PERMISSIONS,
  };
  for (const [user, permissions] of Object.entries(granted)) {
    assert.deepEqual(
      rows.get(user),
      [permissions.configure, permissions.write, permissions.read],
      `${user}'s row`,
    );
  }
  assert.deepEqual([...rows.keys()].sort(), Object.keys(granted).sort(), "one row per user");
});

/** The pages that give each promise the test that proves it. */
const PROOF_PAGES = ["docs/reliability.md", "docs/security.md"];

/**
 * Tests cited as `` `path_test.ts` "a name", "another name" ``; a path
 * alone cites the file.
 */
const CITATION = /`([\w./-]+_test\.ts)`((?:,?\s+"[^"]+")*)/g;

/**
 * The names `source` gives its tests and steps (`Deno.test`, `t.step`, a
 * `conformance` case, `name:`), each as a pattern: `${...}` in a name, filled
 * in when the test runs, matches any text.
 */
export function testNames(source: string): RegExp[] {
  const literal =
    /(?:Deno\.test\(|name:|\.step\(|conformance\()\s*(["'`])((?:\\.|(?!\1)[^\\])*)\1/g;
  return [...source.matchAll(literal)].map(([, , name]) => {
    const parts = name.split(/\$\{[^}]*\}/).map((part) =>
      part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
    );
    return new RegExp(`^${parts.join(".+")}$`);
  });
}

Deno.test("testNames() reads names as written and fills in none of a template", () => {
  const names = testNames(`Deno.test("a b", () => {}); Deno.test({ name:\n "c (d)" });
    await t.step(\`e \${x} f\`, () => {});`);
  assert.ok(names[0].test("a b") && !names[0].test("a bc"));
  assert.ok(names[1].test("c (d)"));
  assert.ok(names[2].test("e 4.0.5 f") && !names[2].test("e  g"));
});

Deno.test("docs/security.md and docs/reliability.md cite only test files and test names that exist", async () => {
  for (const path of PROOF_PAGES) {
    const text = PAGES.find((page) => page.path === path)!.text.replaceAll("\\|", "|");
    // A name in prose may be wrapped over lines.
    const cited = [...text.matchAll(CITATION)].flatMap(([, file, names]) => [
      { file, name: undefined as string | undefined },
      ...[...names.matchAll(/"([^"]+)"/g)].map(([, name]) => ({
        file,
        name: name.replace(/\s+/g, " "),
      })),
    ]);
    assert.ok(
      cited.filter(({ name }) => name !== undefined).length >= 40,
      `${path} names the tests that prove its promises`,
    );
    const missing: string[] = [];
    for (const { file, name } of cited) {
      let source: string;
      try {
        source = await Deno.readTextFile(new URL(file, ROOT));
      } catch {
        missing.push(`${file}: no such file`);
        continue;
      }
      if (name !== undefined && !testNames(source).some((pattern) => pattern.test(name))) {
        missing.push(`${file}: no test named "${name}"`);
      }
    }
    assert.deepEqual(missing, [], `${path} cites what is not there: rename it in the page too`);
  }
});
