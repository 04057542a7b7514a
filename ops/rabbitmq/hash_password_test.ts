import assert from "node:assert/strict";
import { generatePassword, hashPassword } from "./hash_password.ts";

function saltOf(hash: string): Uint8Array {
  return Uint8Array.from(atob(hash), (c) => c.charCodeAt(0)).slice(0, 4);
}

// Imported into RabbitMQ 3.10 as password_hash; the users then logged in with
// these passwords.
const VERIFIED = [
  { password: "pwa", hash: "SwO/0HusI+Z2Oci6Rr8EFPwHMDyCaXA4M6wVb+3tmoVRTTTo" },
  { password: "pwd", hash: "jqGh2Rc9OwxORPwSiCrQzYQ453POz04MPrGzfuqXriLXQu19" },
];

Deno.test("hashPassword() makes the hash RabbitMQ accepted for the same salt", async () => {
  for (const { password, hash } of VERIFIED) {
    assert.equal(await hashPassword(password, saltOf(hash)), hash);
  }
});

Deno.test("hashPassword() salts each hash at random", async () => {
  const [a, b] = [await hashPassword("same"), await hashPassword("same")];
  assert.notEqual(a, b);
  assert.equal(atob(a).length, 36, "4 bytes of salt and 32 of SHA-256");
  await assert.rejects(hashPassword("x", new Uint8Array(3)), RangeError);
});

Deno.test("generatePassword() gives 32 URL-safe characters, different each time", () => {
  const passwords = new Set(Array.from({ length: 100 }, generatePassword));
  assert.equal(passwords.size, 100);
  for (const password of passwords) assert.match(password, /^[A-Za-z0-9_-]{32}$/);
});
