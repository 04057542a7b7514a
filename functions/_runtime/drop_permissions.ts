/**
 * Gives up, for the rest of the process, the permissions a worker needs only
 * to start: reading its secret files, its environment variables and the host
 * name. Handlers run after this, so a function cannot read the worker's
 * credentials even where the process was allowed to at start.
 *
 * Deno can revoke a path or a variable only when it was granted by name
 * (`--allow-read=/run/secrets/amqp_password`, as in the worker image); a
 * blanket `--allow-read` or `--allow-env` stays as it is.
 *
 * @module
 */

/** What to give up. */
export interface DropPermissionsOptions {
  /** Files that may no longer be read. */
  files: readonly string[];
  /** Environment variables that may no longer be read. */
  variables: readonly string[];
}

/** Revokes reading `files`, `variables` and the host name; see the module documentation. */
export function dropPermissions(options: DropPermissionsOptions): void {
  for (const path of options.files) Deno.permissions.revokeSync({ name: "read", path });
  for (const variable of options.variables) {
    Deno.permissions.revokeSync({ name: "env", variable });
  }
  Deno.permissions.revokeSync({ name: "sys", kind: "hostname" });
}
