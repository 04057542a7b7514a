/**
 * `deno task worker <function>`: runs one function from `functions/` as a
 * worker process, configured by environment variables.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { NAME_PATTERN } from "./define_function.ts";
import type { FunctionDefinition } from "./define_function.ts";
import { serve } from "./serve.ts";
import { WORKER_ENV_VARS } from "./worker_settings.ts";

const HELP = `Usage: deno task worker <function>

Runs functions/<function>.ts as a worker: it consumes the function's queue on
RabbitMQ, answers each request on its reply_to, and stops cleanly on SIGTERM
or SIGINT (Ctrl-C), finishing the tasks it holds.

Examples:
  deno task worker task_a
  AMQP_URL=amqp://guest:guest@localhost:5672 CONCURRENCY=4 deno task worker task_b

The task may read only functions/; to use a *_FILE variable, allow its file:
  AMQP_URL=amqp://task_a@broker:5672 AMQP_PASSWORD_FILE=task_a.password \
    deno run --no-prompt --allow-net --allow-env --allow-sys=hostname \
    --allow-read=functions,task_a.password functions/_runtime/worker_main.ts task_a

Environment:
  AMQP_URL           broker URL (default amqp://guest:guest@localhost:5672),
                     amqps:// for TLS; leave the password out and use:
  AMQP_PASSWORD_FILE file holding the password of the URL's user
  AMQP_URL_FILE      file holding the whole URL (instead of AMQP_URL)
  AMQP_CA_FILE       PEM file of the CA that signs the broker's certificate
  AMQP_CERT_FILE     PEM file of a client certificate, with AMQP_KEY_FILE
  AMQP_KEY_FILE      PEM file of that certificate's private key
  QUEUE              queue to consume (default: the function's own)
  CONCURRENCY        handlers running at once (default 1)
  PREFETCH           unacknowledged deliveries held (default CONCURRENCY)
  QUEUE_TYPE         classic or quorum (default classic)
  MAX_MESSAGE_BYTES  largest request accepted (default 1048576)
  SHUTDOWN_GRACE_MS  time to finish tasks after a stop signal (default 10000)
  WORKER_ID          name in replies and logs (default <function>@<host>-<pid>)
  LOG_LEVEL          debug, info, warn or error (default info)
  LOG_FORMAT         json or text (default json)
  METRICS_PORT       port of GET /healthz and /metrics (default 9464; 0: off)
`;

async function loadFunction(name: string): Promise<FunctionDefinition> {
  const url = new URL(`../${name}.ts`, import.meta.url);
  let module: { default?: FunctionDefinition };
  try {
    module = await import(url.href);
  } catch (error) {
    if (error instanceof TypeError && /Module not found/i.test(error.message)) {
      const available = [];
      for (const entry of Deno.readDirSync(new URL("..", import.meta.url))) {
        if (entry.isFile && entry.name.endsWith(".ts")) available.push(entry.name.slice(0, -3));
      }
      throw new TypeError(
        `Cannot run function '${name}' as functions/${name}.ts does not exist: use one of ${
          available.sort().join(", ")
        }`,
      );
    }
    throw error;
  }
  if (typeof module.default?.handler !== "function") {
    throw new TypeError(
      `Cannot run function '${name}' as functions/${name}.ts has no default export from defineFunction(): add one`,
    );
  }
  return module.default;
}

if (import.meta.main) {
  const { positionals, values } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { help: { type: "boolean", short: "h" } },
    strict: false,
  });
  if (values.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  const [name, ...rest] = positionals;
  if (!name || rest.length > 0 || !NAME_PATTERN.test(name)) {
    console.error(
      name
        ? `Cannot run '${positionals.join(" ")}': give one function name, such as task_a`
        : "Cannot start a worker without a function name: run 'deno task worker task_a'",
    );
    console.error(
      `See 'deno task worker --help'. Settings come from ${WORKER_ENV_VARS.join(", ")}.`,
    );
    Deno.exit(2);
  }
  try {
    await serve(await loadFunction(name));
  } catch (error) {
    console.error((error as Error).message);
    Deno.exit(2);
  }
}
