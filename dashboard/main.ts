/**
 * `deno task dashboard`: a live web page of the system, served on
 * 127.0.0.1:8025 by default and protected by a token. See docs/dashboard.md.
 * Exit codes: 0 stopped by SIGINT or SIGTERM, 2 bad option, configuration
 * or address, 3 the broker given refused or did not answer, 70 a bug.
 *
 * @module
 */

import { EXIT, EXIT_HELP_BUG, exitCodeOf } from "../dispatcher/cli/run_cli.ts";
import { brokerHelp, brokerSettings, readOptions, UsageError } from "../dispatcher/cli/options.ts";
import { loadConfig } from "../dispatcher/config/load_config.ts";
import { DASHBOARD_USER, OPERATOR_USER } from "../core/contract/users.ts";
import { describeSchedule } from "../core/schedule.ts";
import { generateToken, isUsableToken, MIN_TOKEN_CHARS } from "./auth.ts";
import type { ConnectionSettings } from "./connections.ts";
import { DASHBOARD_OPTIONS, type DashboardIo, parseFlags } from "./dashboard_flags.ts";
import { runDashboard } from "./run_dashboard.ts";

const HELP = `Usage: deno task dashboard [options]

Serves a live page of the system: each function's queue depth, consumers,
dead letters, throughput and latency over the last minutes, the live
workers, a stream of task events, and each function's dead letters with a
replay button. Open the address it prints (on loopback the page's own host
name, http://dashboard.localhost:PORT): it carries a token (?token=...),
which opens a session kept in a cookie. Programs use the API address it
prints with Authorization: Bearer <token>.

Workers publish task events when started with TASK_EVENTS=true (and the
dispatcher its task-sent events); without them the page shows queues,
workers and dead letters only.

It watches as the broker user ${DASHBOARD_USER} (see docs/dashboard.md), and reads
and replays dead letters as ${OPERATOR_USER}.

Options:
  --port N             port to listen on (default: 8025; 0: any free port)
  --host ADDRESS       address to listen on (default: 127.0.0.1). Another
                       address exposes the page, token in clear, to the
                       network: put it behind TLS
  --public-origin URL  where browsers reach the page, such as
                       https://dash.example.com behind a TLS proxy: the
                       session cookie is then Secure and a replay must come
                       from there (default on loopback:
                       http://dashboard.localhost:PORT, a host name of its own)
  --config PATH        where the functions are (default: test-config.yml)
${brokerHelp(DASHBOARD_USER)}
  --operator-broker URL
                       where dead letters are read and replayed, as
                       ${OPERATOR_USER} (default: the --broker URL with the user
                       ${OPERATOR_USER}, or that URL itself when it carries a password)
  --operator-password-file PATH
                       the ${OPERATOR_USER}'s password (default, on localhost: the
                       compose stack's secrets/${OPERATOR_USER}.password)
  --local              explain what can be seen of the embedded broker
                       (nothing: it lives inside the dispatcher's process)
  -h, --help           show this help

Environment:
  DASHBOARD_TOKEN      the token to require (at least ${MIN_TOKEN_CHARS} characters of
                       A-Z a-z 0-9 . _ ~ -); default: a new random one each start

Exit codes:
  0  stopped by Ctrl-C (SIGINT) or SIGTERM
  2  bad option, configuration, credentials file or address
  3  the broker given (--broker, AMQP_URL) refused or did not answer
  ${EXIT_HELP_BUG}

Examples:
  deno task dashboard
  deno task dashboard --port 9000 --broker amqp://guest:guest@localhost:5672
  DASHBOARD_TOKEN=$(cat dashboard.token) deno task dashboard --host 0.0.0.0`;

/** Runs the dashboard with `args` until `io.stop`; resolves with the exit code. */
export async function main(args: string[], io: DashboardIo): Promise<number> {
  try {
    const values = readOptions(args, DASHBOARD_OPTIONS, "dashboard");
    if (values.help) {
      io.out(HELP);
      return EXIT.passed;
    }
    const flags = parseFlags(values);
    const given = io.env("DASHBOARD_TOKEN");
    if (given !== undefined && !isUsableToken(given)) {
      throw new UsageError(
        `Cannot use DASHBOARD_TOKEN as it is not ${MIN_TOKEN_CHARS} or more characters of A-Z a-z 0-9 . _ ~ -: set a longer one, or unset it for a random token`,
      );
    }
    const config = await loadConfig(flags.config);
    // Shown beside each function: when the scheduler runs it.
    const schedules = new Map(
      [...config.schedules ?? []].map(([name, schedule]) => [name, describeSchedule(schedule)]),
    );
    const settings: ConnectionSettings = {
      dashboard: brokerSettings(values),
      operator: { url: values["operator-broker"], passwordFile: values["operator-password-file"] },
      env: io.env,
    };
    // Shown beside each function: the events that run it.
    const triggers = new Map(
      [...config.subscriptions ?? []].map(([name, { triggers }]) => [name, triggers ?? []]),
    );
    return await runDashboard({
      flags,
      functions: config.functions,
      triggers,
      schedules,
      token: given ?? generateToken(),
      tokenGiven: given !== undefined,
      settings,
      io,
    });
  } catch (error) {
    const code = exitCodeOf(error);
    if (code !== undefined) {
      io.err((error as Error).message);
      return code;
    }
    io.err(
      `Bug: deno task dashboard stopped on an unexpected error (exit ${EXIT.bug}). Please report it with what follows:\n${
        error instanceof Error ? error.stack ?? error.message : String(error)
      }`,
    );
    return EXIT.bug;
  }
}

if (import.meta.main) {
  const stop = new Promise<void>((resolve) => {
    for (const signal of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(signal, resolve);
  });
  const code = await main(Deno.args, {
    out: (line) => console.log(line),
    err: (line) => console.error(line),
    env: (name) => Deno.env.get(name),
    stop,
  });
  Deno.exit(code);
}
