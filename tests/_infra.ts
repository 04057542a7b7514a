/**
 * What integration and end-to-end tests need from the machine, and whether
 * to run them. On a laptop without RabbitMQ or Docker they are ignored with
 * a message saying what to start; with `CI=true` they always run, so missing
 * infrastructure fails CI instead of hiding.
 *
 * Importing this probes the machine (a TCP connection to RabbitMQ, `docker`,
 * `openssl` and Chromium): only tests that need a gate import it. Helpers
 * without side effects (`waitFor`, `uniqueName`, `freePort`) are in
 * `_helpers.ts`.
 *
 * @module
 */

import { runCommand, withDeadline } from "./_command.ts";

/** How long a probe of the machine may take before its tool counts as missing. */
const PROBE_TIMEOUT_MS = 30_000;

/** True in CI: no test may be skipped for missing infrastructure. */
export const IN_CI = Deno.env.get("CI") === "true";

/** The RabbitMQ the integration tests use. */
export const AMQP_URL = Deno.env.get("AMQP_URL") || "amqp://guest:guest@127.0.0.1:5672";

async function reachable(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  try {
    const connection = await withDeadline(
      Deno.connect({ hostname, port: Number(port) || 5672 }),
      PROBE_TIMEOUT_MS,
      `a TCP connection to ${hostname}`,
    );
    connection.close();
    return true;
  } catch {
    return false;
  }
}

/** Whether `command args` exits 0 within 30 s: a probe that hangs says "not here". */
async function succeeds(command: string, args: string[]): Promise<boolean> {
  try {
    return (await runCommand(command, args, { timeoutMs: PROBE_TIMEOUT_MS })).code === 0;
  } catch {
    return false;
  }
}

async function dockerRuns(): Promise<boolean> {
  return await succeeds("docker", ["compose", "version"]) && await succeeds("docker", ["info"]);
}

function opensslRuns(): Promise<boolean> {
  return succeeds("openssl", ["version"]);
}

/** The headless browser for checks of the HTML report: `$CHROMIUM`, else the first on PATH. */
export const CHROMIUM = await findChromium();

async function findChromium(): Promise<string | undefined> {
  const candidates = [Deno.env.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"];
  for (const candidate of candidates) {
    if (candidate && await succeeds(candidate, ["--version"])) return candidate;
  }
  return undefined;
}

const HAS_RABBITMQ = await reachable(AMQP_URL);
const HAS_OPENSSL = await opensslRuns();
const HAS_DOCKER = HAS_OPENSSL && await dockerRuns();
const told = new Set<string>();

function gate(available: boolean, what: string, howTo: string): boolean {
  if (available || IN_CI) return false;
  if (!told.has(what)) {
    told.add(what);
    console.warn(`Ignoring ${what} tests: ${howTo}`);
  }
  return true;
}

/** `ignore` for tests that need RabbitMQ at `AMQP_URL`. */
export const NEEDS_RABBITMQ = gate(
  HAS_RABBITMQ,
  "integration",
  `no RabbitMQ answers at ${AMQP_URL.replace(/:[^:@/]*@/, ":***@")}. ` +
    "Start one (docker compose up -d rabbitmq) or set AMQP_URL.",
);

/** `ignore` for tests that need a Docker engine with compose, and openssl for certificates. */
export const NEEDS_DOCKER = gate(
  HAS_DOCKER,
  "end-to-end",
  "no Docker engine with 'docker compose' answers, or no openssl. Start Docker and install openssl to run them.",
);

/** `ignore` for tests that need a headless Chromium. */
export const NEEDS_CHROMIUM = gate(
  CHROMIUM !== undefined,
  "browser",
  "no Chromium found. Install it (apt-get install -y chromium) or set CHROMIUM to its path.",
);

/** `ignore` for tests that make certificates with openssl (no broker or Docker needed). */
export const NEEDS_OPENSSL = gate(
  HAS_OPENSSL,
  "certificate",
  "no openssl found. Install it (apt-get install -y openssl).",
);
