/**
 * The Erlang cookie of a RabbitMQ cluster: the shared secret its nodes (and
 * their command-line tools) prove to each other. Whoever holds it controls
 * every node, so it is made here, at random, never taken from an image
 * (the stand-in image of this project ships one, the same for everyone).
 *
 * secrets-init makes `erlang.cookie` once and then leaves it alone: a node
 * refuses a cookie file that others may read, and compose.cluster.yaml's
 * `erlang-cookie` step gives it to the broker image's own user (whose uid
 * differs between images), so its owner is not secrets-init's to reset.
 *
 * @module
 */

/** The name of the cookie file in the secrets directory. */
export const ERLANG_COOKIE_FILE = "erlang.cookie";

const COOKIE_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/** A new cookie: 40 upper-case letters and digits (about 206 bits), as Erlang's own are made. */
export function generateCookie(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(40));
  // 256 is not a multiple of 36: drawing again above 252 keeps every character equally likely.
  let cookie = "";
  for (const byte of bytes) {
    let value = byte;
    while (value >= 252) value = crypto.getRandomValues(new Uint8Array(1))[0];
    cookie += COOKIE_CHARACTERS[value % 36];
  }
  return cookie;
}

/**
 * Makes `<dir>/erlang.cookie` (mode 0400) when it is missing or empty, and
 * keeps it, owner and mode included, when it exists. Resolves with what it did.
 */
export async function ensureCookie(dir: string): Promise<"created" | "kept"> {
  const path = `${dir}/${ERLANG_COOKIE_FILE}`;
  try {
    if ((await Deno.readTextFile(path)).trim() !== "") return "kept";
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  await Deno.remove(path).catch(() => {});
  // Without a trailing newline: Erlang would read it as part of the cookie.
  await Deno.writeTextFile(path, generateCookie(), { mode: 0o400, createNew: true });
  await Deno.chmod(path, 0o400);
  return "created";
}
