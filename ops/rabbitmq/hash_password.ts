/**
 * RabbitMQ's `rabbit_password_hashing_sha256`, so that a definitions file
 * carries password hashes instead of passwords: base64 of a 4-byte salt
 * followed by SHA-256 of the salt and the UTF-8 password.
 *
 * @module
 */

/** The `hashing_algorithm` of the hashes {@linkcode hashPassword} makes. */
export const HASHING_ALGORITHM = "rabbit_password_hashing_sha256";

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** Hashes `password` as RabbitMQ does; `salt` (4 bytes) is random unless given, for tests. */
export async function hashPassword(password: string, salt?: Uint8Array): Promise<string> {
  const saltBytes = salt ?? crypto.getRandomValues(new Uint8Array(4));
  if (saltBytes.length !== 4) {
    throw new RangeError(
      `Cannot hash a password as the salt has ${saltBytes.length} bytes: give 4`,
    );
  }
  const secret = new TextEncoder().encode(password);
  const input = new Uint8Array(4 + secret.length);
  input.set(saltBytes);
  input.set(secret, 4);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", input));
  const hash = new Uint8Array(4 + digest.length);
  hash.set(saltBytes);
  hash.set(digest, 4);
  return toBase64(hash);
}

/** A new random password: 24 bytes (192 bits) as 32 URL-safe characters. */
export function generatePassword(): string {
  return toBase64(crypto.getRandomValues(new Uint8Array(24)))
    .replaceAll("+", "-")
    .replaceAll("/", "_");
}
