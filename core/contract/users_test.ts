import assert from "node:assert/strict";
import { DEFAULT_ALLOWED_SENDERS, DEFAULT_CALLERS, STACK_USERS } from "./users.ts";

const ROOT = new URL("../../", import.meta.url);

/** Every product file: TypeScript outside tests, as the project's root lists it. */
async function productFiles(dir = ROOT, path = ""): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(new URL(path, dir))) {
    const child = `${path}${entry.name}`;
    if (entry.isDirectory) {
      if (["tests", "node_modules", "results", ".git"].includes(entry.name)) continue;
      files.push(...await productFiles(dir, `${child}/`));
    } else if (child.endsWith(".ts") && !child.endsWith("_test.ts")) {
      files.push(child);
    }
  }
  return files;
}

Deno.test("the stack's broker user names are defined in core/contract/users.ts and nowhere else", async () => {
  const names = STACK_USERS.join("|");
  // A constant of users, or a list of them, spelled out rather than imported
  // (KEDA's namespace, also "keda", is no user).
  const definition = new RegExp(
    `(?:const|let)\\s+\\w*(?:USER|SENDER|CALLER|RESERVED)\\w*\\s*(?::[^=]+)?=\\s*(?:"(?:${names})"|\\[\\s*"(?:${names})")`,
    "i",
  );
  const found: string[] = [];
  for (const file of await productFiles()) {
    if (file === "core/contract/users.ts") continue;
    const text = await Deno.readTextFile(new URL(file, ROOT));
    text.split("\n").forEach((line, i) => {
      if (definition.test(line)) found.push(`${file}:${i + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(found, [], "import the name from core/contract/users.ts instead");
});

Deno.test("the default senders and callers are users of the stack", () => {
  for (const user of [...DEFAULT_ALLOWED_SENDERS, ...DEFAULT_CALLERS]) {
    assert.ok(STACK_USERS.includes(user), user);
  }
  assert.equal(new Set(STACK_USERS).size, STACK_USERS.length);
});
