/**
 * A worker whose function's sandbox runs in a process of its own
 * (`isolation: "process"`, as the embedded mode runs it), for the
 * benchmark to measure beside the default, a Web Worker in the worker's own
 * process. Run as `runtime/process/main.ts` is, with `--allow-run` of the
 * deno binary as well:
 *
 *   deno run ... --allow-run=$(which deno) bench/process_worker.ts task_a
 *
 * @module
 */

import { main } from "../runtime/process/main.ts";

if (import.meta.main) Deno.exit(await main(Deno.args, { isolation: "process" }));
