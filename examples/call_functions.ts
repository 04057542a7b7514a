/**
 * Calls task_a and task_b at once through the client library and prints
 * each result, as a program of your own would:
 *
 * ```sh
 * deno run -A examples/call_functions.ts                 # functions/registry.yaml
 * deno run -A examples/call_functions.ts my-registry.yaml
 * ```
 *
 * The broker is found as `deno task dispatch` finds it: `AMQP_URL`, else the
 * compose stack's dispatcher on localhost, else guest on localhost. Exits 1
 * when a call failed.
 *
 * @module
 */

import { connect, type ConnectOptions } from "@task-system/client";

/** Calls both functions concurrently, prints each outcome; resolves with whether both succeeded. */
export async function callFunctions(
  options: ConnectOptions = {},
  print: (line: string) => void = console.log,
): Promise<boolean> {
  const client = await connect(options);
  try {
    const calls = [
      { function: "task_a", payload: { work_ms: 100 } },
      { function: "task_b", payload: { work_ms: 200 } },
    ];
    const results = await client.callAll<string>(calls);
    results.forEach((result, i) =>
      print(
        result.status === "fulfilled"
          ? `${calls[i].function}: ${result.value}`
          : `${calls[i].function} failed: ${result.reason.message}`,
      )
    );
    return results.every((result) => result.status === "fulfilled");
  } finally {
    await client.close();
  }
}

if (import.meta.main) {
  const ok = await callFunctions({ registry: Deno.args[0] });
  Deno.exit(ok ? 0 : 1);
}
