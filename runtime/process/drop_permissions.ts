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
  /**
   * Keep the right to run programs: a sandbox in a process of its own
   * (`isolation: "process"`) is started, and started again, with it.
   * @default {false}
   */
  keepRun?: boolean;
}

/** What a worker gives up besides its secret files. */
function givenUpNames(keepRun = false) {
  return (["env", "sys", "run", "ffi", "write"] as const).filter((name) =>
    !keepRun || name !== "run"
  );
}

/**
 * Revokes reading `files`, and all environment, system, subprocess, FFI and
 * write permissions; see the module documentation. Returns the files that
 * are still readable (granted by a blanket `--allow-read`).
 */
export function dropPermissions(options: DropPermissionsOptions): string[] {
  for (const path of options.files) Deno.permissions.revokeSync({ name: "read", path });
  for (const name of givenUpNames(options.keepRun)) Deno.permissions.revokeSync({ name });
  return options.files.filter((path) =>
    Deno.permissions.querySync({ name: "read", path }).state === "granted"
  );
}

/** What {@linkcode dropPermissions} gives up, each as this process holds it now. */
export interface PermissionReport {
  /** Given up: `env`, `sys`, `run`, `ffi`, `write`, and `read <file>` for each secret file. */
  givenUp: string[];
  /** Still held, of the same. */
  kept: string[];
}

/**
 * Asks Deno, for each permission {@linkcode dropPermissions} gives up,
 * whether this process still holds it: what a worker logs once it has
 * given them up, so that the log shows it did.
 */
export function reportPermissions(
  files: readonly string[],
  options: { keepRun?: boolean } = {},
): PermissionReport {
  const report: PermissionReport = { givenUp: [], kept: [] };
  const asked: [string, Deno.PermissionDescriptor][] = [
    ...givenUpNames(options.keepRun).map((name) =>
      [name, { name }] as [string, Deno.PermissionDescriptor]
    ),
    ...files.map((path) =>
      [`read ${path}`, { name: "read", path }] as [string, Deno.PermissionDescriptor]
    ),
  ];
  for (const [what, descriptor] of asked) {
    const held = Deno.permissions.querySync(descriptor).state === "granted";
    (held ? report.kept : report.givenUp).push(what);
  }
  return report;
}
