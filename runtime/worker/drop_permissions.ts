/**
 * Gives up, for the rest of the process, what a worker needs only to start:
 * reading its secret files, every environment variable, the host name, and
 * any right to run programs, load libraries or write files. What stays is
 * the network (the broker, and the health port) and reading its own code,
 * which it needs to start the function's sandbox again.
 *
 * Deno can revoke a path only where it was granted by name
 * (`--allow-read=/run/secrets/amqp_password`, as in the worker image);
 * {@linkcode dropPermissions} reports the files that stay readable under a
 * blanket `--allow-read`. The function itself never holds any of this: it
 * runs in a sandbox with no permissions at all.
 *
 * @module
 */

/** What to give up. */
export interface DropPermissionsOptions {
  /** Files that may no longer be read: every secret file the worker may have been given. */
  files: readonly string[];
}

/**
 * Revokes reading `files`, and all environment, system, subprocess, FFI and
 * write permissions; see the module documentation. Returns the files that
 * are still readable (granted by a blanket `--allow-read`).
 */
export function dropPermissions(options: DropPermissionsOptions): string[] {
  for (const path of options.files) Deno.permissions.revokeSync({ name: "read", path });
  for (const name of ["env", "sys", "run", "ffi", "write"] as const) {
    Deno.permissions.revokeSync({ name });
  }
  return options.files.filter((path) =>
    Deno.permissions.querySync({ name: "read", path }).state === "granted"
  );
}
