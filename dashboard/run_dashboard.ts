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

import { type Broker, type BrokerTarget, BrokerUnavailableError } from "../core/broker/mod.ts";
import type { FunctionRoute } from "../core/registry.ts";
import { EXIT } from "../dispatcher/cli/run_cli.ts";
import { UsageError } from "../dispatcher/cli/options.ts";
import { createAuth, DASHBOARD_HOST_NAME } from "./auth.ts";
import { startBrokerWatch } from "./broker_watch.ts";
import {
  type ConnectionSettings,
  connectOnce,
  openOperator,
  resolveDashboardTarget,
} from "./connections.ts";
import { OPERATOR_USER } from "../core/contract/users.ts";
import { DeadLetterDesk } from "./dead_letter_desk.ts";
import { DashboardState } from "./dashboard_state.ts";
import type { DashboardFlags, DashboardIo } from "./dashboard_flags.ts";
import { dashboardHandler, readPageFiles } from "./server.ts";
import { SseHub } from "./sse.ts";

/** Pause between attempts to reach the broker. */
const RETRY_MS = 3000;

/** What the page says on `--local`. */
export const EMBEDDED_NOTICE =
  "The embedded broker lives inside the process that runs it (deno task dispatch --local), so this page cannot see its queues, workers, task events or dead letters: that run's live status and --html report show them. To watch the system here, run the functions on RabbitMQ (docker compose up -d --build) and start the dashboard without --local.";

function unreachableNotice(label: string): string {
  return `No RabbitMQ answers at ${label}. Without one, deno task dispatch runs on the embedded broker inside its own process, whose queues, workers, task events and dead letters no other process can see (that run's live status and --html report show them). Start RabbitMQ (docker compose up -d --build) or give --broker: this page connects as soon as it answers.`;
}

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

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}

function listen(
  flags: DashboardFlags,
  handler: (request: Request) => Promise<Response>,
): Promise<{ server: Deno.HttpServer; port: number }> {
  return new Promise((resolve, reject) => {
    try {
      let port = flags.port;
      const server = Deno.serve({
        hostname: flags.host,
        port: flags.port,
        // Called before Deno.serve returns.
        onListen: (address) => port = address.port,
      }, handler);
      resolve({ server, port });
    } catch (error) {
      const why = error instanceof Deno.errors.AddrInUse
        ? "the address is in use: stop what uses it, or give another --port"
        : error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable
        ? "this process may not listen there: give a --port above 1023, or allow it"
        : `${(error as Error).message}: give another --host or --port`;
      reject(new UsageError(`Cannot listen on ${flags.host}:${flags.port} as ${why}`));
    }
  });
}

/** Runs the dashboard until `io.stop`; resolves with the exit code. */
export async function runDashboard(options: RunDashboardOptions): Promise<number> {
  const { flags, functions, settings, io } = options;
  let target: BrokerTarget | undefined;
  let first: Broker | undefined;
  let firstProblem: string | undefined;
  if (!flags.local) {
    target = await resolveDashboardTarget(settings);
    try {
      first = await connectOnce(target, settings, "dashboard", target.explicit ? 5000 : 1500);
    } catch (error) {
      // A broker the user named must answer; the default may come later.
      if (!(error instanceof BrokerUnavailableError) || target.explicit || !error.unreachable) {
        throw error;
      }
      firstProblem = unreachableNotice(target.label);
    }
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
  const loopback = isLoopback(flags.host);
  // The handler needs the port, which --port 0 leaves to the system.
  let handle: ((request: Request) => Promise<Response>) | undefined;
  let listening: { server: Deno.HttpServer; port: number } | undefined;
  let publicOrigin: string | undefined;
  try {
    const page = await readPageFiles();
    listening = await listen(
      flags,
      (request) => handle ? handle(request) : Promise.resolve(new Response(null, { status: 503 })),
    );
    // On loopback the page gets a host name of its own, so that its cookie
    // reaches no other service on localhost or 127.0.0.1.
    publicOrigin = flags.publicOrigin ??
      (loopback ? `http://${DASHBOARD_HOST_NAME}:${listening.port}` : undefined);
    handle = dashboardHandler({
      auth: await createAuth(options.token, {
        publicOrigin,
        loginAtPublicOriginOnly: loopback && flags.publicOrigin === undefined,
      }),
      state,
      hub,
      page,
      loopback,
      publicOrigin,
    });
  } catch (error) {
    await first?.close();
    await listening?.server.shutdown();
    throw error;
  }
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
    ? supervise(target, first, firstProblem)
    : Promise.resolve(state.setMode("embedded", EMBEDDED_NOTICE));

  async function supervise(target: BrokerTarget, broker?: Broker, problem?: string) {
    if (problem) state.detach("unavailable", problem);
    let told = "";
    while (!stopping) {
      if (!broker) {
        try {
          broker = await connectOnce(target, settings, "dashboard", RETRY_MS);
        } catch (error) {
          const why = error instanceof BrokerUnavailableError && error.unreachable
            ? unreachableNotice(target.label)
            : (error as Error).message;
          state.detach("unavailable", why);
          await Promise.race([stopped, new Promise((r) => setTimeout(r, RETRY_MS))]);
          continue;
        }
      }
      let watch;
      try {
        watch = await startBrokerWatch(broker, {
          functions,
          onEvent: (event) => state.onEvent(event),
          onScheduler: (note) => state.onScheduler(note),
          onChange: () => state.changed(),
        });
      } catch (error) {
        const why = `Cannot watch the broker as ${broker.user}: ${(error as Error).message}`;
        if (why !== told) io.err(told = why);
        state.detach("unavailable", why);
        await broker.close().catch(() => {});
        broker = undefined;
        await Promise.race([stopped, new Promise((r) => setTimeout(r, RETRY_MS))]);
        continue;
      }
      state.attach(watch);
      const cause = await Promise.race([broker.closed, stopped.then(() => undefined)]);
      await watch.stop();
      if (stopping) {
        await broker.close().catch(() => {});
        return;
      }
      state.detach(
        "connecting",
        `The connection to ${target.label} ended${
          cause ? ` (${cause.message})` : ""
        }: reconnecting`,
      );
      broker = undefined;
    }
  }

  await stopped;
  hub.close();
  state.close();
  await watching;
  await desk?.close();
  await listening.server.shutdown();
  return EXIT.passed;
}
