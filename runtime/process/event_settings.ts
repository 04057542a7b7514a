/**
 * Where a host worker learns its function's triggers and emits when no
 * variable says (`deno task worker task_a`): the function registry beside
 * the functions, `functions/registry.yaml`. Its parser is loaded only
 * then, by a specifier no bundler follows: the worker image carries no
 * registry and no YAML parser, and its deployments set `FUNCTION_TRIGGERS`
 * and `FUNCTION_EMITS` from the registry instead (`deno task manifests`).
 *
 * @module
 */

/** A function's events, as the registry says them. */
export interface FunctionEvents {
  triggers: string[];
  emits?: string;
}

/** What this file uses of core/registry.ts, which it loads only on the host. */
interface RegistryModule {
  loadRegistry(file: string): Promise<
    { functions: Map<string, { name: string; triggers?: readonly string[]; emits?: string }> }
  >;
}

/**
 * Each function's triggers and emits from the registry at `file`, or
 * `undefined` when there is no registry there. A registry that cannot be
 * read or is wrong throws, naming the problem.
 */
export async function registryEvents(file: URL): Promise<Map<string, FunctionEvents> | undefined> {
  try {
    await Deno.stat(file);
  } catch {
    return undefined;
  }
  const parser = ["..", "..", "core", "registry.ts"].join("/");
  const { loadRegistry } = await import(new URL(parser, import.meta.url).href) as RegistryModule;
  const registry = await loadRegistry(file.pathname);
  return new Map(
    [...registry.functions.values()].map((entry) => [
      entry.name,
      { triggers: [...entry.triggers ?? []], ...(entry.emits && { emits: entry.emits }) },
    ]),
  );
}
