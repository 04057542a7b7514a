/**
 * The options of `deno task dashboard`, their checks and what a run reads
 * and writes, apart from the entry point so that the run
 * (`run_dashboard.ts`) can take them.
 *
 * @module
 */

import {
  BROKER_OPTIONS,
  checkLocal,
  type OptionValues,
  UsageError,
  wholeNumberFlag,
} from "../dispatcher/cli/options.ts";

/** Every option of `deno task dashboard`. */
export const DASHBOARD_OPTIONS = {
  port: { type: "string" },
  host: { type: "string", default: "127.0.0.1" },
  "public-origin": { type: "string" },
  config: { type: "string", default: "test-config.yml" },
  ...BROKER_OPTIONS,
  "operator-broker": { type: "string" },
  "operator-password-file": { type: "string" },
  local: { type: "boolean", default: false },
  help: { type: "boolean", short: "h", default: false },
} as const;

/** The dashboard's flags, checked. */
export interface DashboardFlags {
  port: number;
  host: string;
  /** `--public-origin`, as an origin (`https://dash.example.com`). */
  publicOrigin?: string;
  config: string;
  local: boolean;
  values: OptionValues<typeof DASHBOARD_OPTIONS>;
}

/** Checks the options; a UsageError says what to give. */
export function parseFlags(values: OptionValues<typeof DASHBOARD_OPTIONS>): DashboardFlags {
  checkLocal(values);
  if (values.local) {
    for (const flag of ["operator-broker", "operator-password-file"] as const) {
      if (values[flag] !== undefined) {
        throw new UsageError(
          `Cannot use --local with --${flag}: the embedded broker needs neither`,
        );
      }
    }
  }
  const host = values.host.trim();
  if (host === "" || /[\s/]/.test(host)) {
    throw new UsageError(
      `Cannot use --host '${values.host}': give an address such as 127.0.0.1, ::1 or 0.0.0.0`,
    );
  }
  return {
    port: wholeNumberFlag(values.port, "--port", 8025, 0, 65535),
    host,
    publicOrigin: values["public-origin"] === undefined
      ? undefined
      : parsePublicOrigin(values["public-origin"]),
    config: values.config,
    local: values.local,
    values,
  };
}

/** `--public-origin`'s value as an origin, or a UsageError that says what to give. */
export function parsePublicOrigin(text: string): string {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (
    !url || !/^https?:$/.test(url.protocol) || url.username || url.password ||
    url.pathname !== "/" || url.search || url.hash
  ) {
    throw new UsageError(
      `Cannot use --public-origin '${text}': give the scheme, host and port browsers use, such as https://dash.example.com`,
    );
  }
  return url.origin;
}

/** Where the dashboard writes and what it reads. */
export interface DashboardIo {
  out: (line: string) => void;
  err: (line: string) => void;
  env: (name: string) => string | undefined;
  /** Resolves when the dashboard must stop (a signal). */
  stop: Promise<void>;
}
