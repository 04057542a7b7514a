/**
 * One run of the dashboard: connects (an explicit broker must answer, or
 * the run exits 3), serves the page, and keeps watching, reconnecting
 * whenever the connection ends, until told to stop. Without a broker given
 * and none on localhost the page still serves, says why it shows nothing
 * (a dispatcher then runs on its own embedded broker, out of sight) and
 * connects as soon as RabbitMQ answers.
 *
 * @module
 */

import type { Broker, BrokerTarget } from "../core/broker/mod.ts";
import type { FunctionRoute } from "../core/registry.ts";
import { EXIT } from "../dispatcher/cli/run_cli.ts";
import {
  connectFirst,
  type ConnectionSettings,
  openOperator,
  resolveDashboardTarget,
  watchBroker,
} from "./connections.ts";
import { OPERATOR_USER } from "../core/contract/users.ts";
import { DeadLetterDesk } from "./dead_letter_desk.ts";
import { DashboardState } from "./dashboard_state.ts";
import type { DashboardFlags, DashboardIo } from "./dashboard_flags.ts";
import { serveDashboard, type Serving } from "./server.ts";
import { SseHub } from "./sse.ts";

/** What the page says on `--local`. */
export const EMBEDDED_NOTICE =
  "The embedded broker lives inside the process that runs it (deno task dispatch --local), so this page cannot see its queues, workers, task events or dead letters: that run's live status and --html report show them. To watch the system here, run the functions on RabbitMQ (docker compose up -d --build) and start the dashboard without --local.";

/** What {@linkcode runDashboard} needs. */
export interface RunDashboardOptions {
  flags: DashboardFlags;
  functions: ReadonlyMap<string, FunctionRoute>;
  /** Each function's triggers, shown beside it. @default {none} */
  triggers?: ReadonlyMap<string, readonly string[]>;
  /** Each scheduled function's schedule, as the page shows it. */
  schedules?: ReadonlyMap<string, string>;
  token: string;
  /** The token came from DASHBOARD_TOKEN: it is not printed. */
  tokenGiven: boolean;
  settings: ConnectionSettings;
  io: DashboardIo;
}

/** Runs the dashboard until `io.stop`; resolves with the exit code. */
export async function runDashboard(options: RunDashboardOptions): Promise<number> {
  const { flags, functions, settings, io } = options;
  let target: BrokerTarget | undefined;
  let first: Broker | undefined;
  let firstProblem: string | undefined;
  if (!flags.local) {
    target = await resolveDashboardTarget(settings);
    ({ broker: first, problem: firstProblem } = await connectFirst(target, settings));
  }
  const hub = new SseHub();
  const desk = target ? new DeadLetterDesk(() => openOperator(settings, target!)) : undefined;
  const state = new DashboardState({
    functions,
    triggers: options.triggers,
    schedules: options.schedules,
    broker: target?.label ?? "embedded (in the dispatcher's own process)",
    hub,
    desk,
  });
  let listening: Serving;
  try {
    listening = await serveDashboard({
      host: flags.host,
      port: flags.port,
      publicOrigin: flags.publicOrigin,
      token: options.token,
      state,
      hub,
    });
  } catch (error) {
    await first?.close();
    throw error;
  }
  const { loopback, publicOrigin } = listening;
  const shown = flags.host.includes(":") ? `[${flags.host}]` : flags.host;
  const direct = `http://${shown === "0.0.0.0" ? "127.0.0.1" : shown}:${listening.port}`;
  const token = options.tokenGiven ? "<DASHBOARD_TOKEN>" : options.token;
  io.out(`Dashboard: ${publicOrigin ?? direct}/?token=${token}`);
  io.out(`API: ${direct}/api/state with Authorization: Bearer <token>`);
  io.out(
    target
      ? `Broker: ${target.label}${
        target.passwordFile ? ` (password from ${target.passwordFile})` : ""
      }; dead letters as ${OPERATOR_USER}`
      : "Broker: none (--local): the page explains what it cannot show",
  );
  if (!loopback && !publicOrigin?.startsWith("https:")) {
    io.err(
      `Serving on ${flags.host}: the token travels in clear over the network unless a TLS proxy is in front (then give --public-origin https://...)`,
    );
  }
  io.out("Stop with Ctrl-C.");

  let stopping = false;
  const stopped = io.stop.then(() => {
    stopping = true;
  });
  const watching = target
    ? watchBroker(target, {
      settings,
      functions,
      state,
      broker: first,
      problem: firstProblem,
      stopped,
      stopping: () => stopping,
      err: (line) => io.err(line),
    })
    : Promise.resolve(state.setMode("embedded", EMBEDDED_NOTICE));

  await stopped;
  hub.close();
  state.close();
  await watching;
  await desk?.close();
  await listening.server.shutdown();
  return EXIT.passed;
}
