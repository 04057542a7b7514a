/**
 * `deno task gateway`: the HTTP front door (docs/gateway.md). Serves the
 * functions of the registry over HTTP as the broker user `gateway`;
 * `deno task gateway keys add ...` makes an API key. Exit codes: 0 stopped
 * by SIGINT or SIGTERM (or a key made), 2 bad option, configuration or
 * keys file, 3 the broker refused or did not answer, 70 a bug.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { connect, type TaskClient } from "../client/mod.ts";
import { EXIT, EXIT_HELP_BUG, exitCodeOf } from "../dispatcher/cli/run_cli.ts";
import {
  BROKER_FLAG_NAMES,
  BROKER_OPTIONS,
  brokerHelp,
  brokerSettings,
  readOptions,
  UsageError,
  wholeNumberFlag,
} from "../dispatcher/cli/options.ts";
import { GATEWAY_USER } from "../core/contract/users.ts";
import { CALLER_NAME_PATTERN } from "../core/contract/named_callers.ts";
import {
  addKeyToFile,
  DEFAULT_SCOPE_LIMITS,
  KEYS_FILE_NAME,
  type KeysWatch,
  newKey,
  readKeysFile,
  removeKeyFromFile,
  watchKeysFile,
} from "./keys.ts";
import { createGateway } from "./server.ts";
import { GatewayFront } from "./front.ts";
import { openSharedCalls } from "./shared_calls.ts";
import { type Cidr, type ForwardedHeader, parseCidrs } from "./client_address.ts";
import { newCallbackSecret, readCallbackSecret } from "./callbacks.ts";

/** What {@linkcode main} reads and writes. */
export interface GatewayIo {
  out(line: string): void;
  err(line: string): void;
  env(name: string): string | undefined;
  /** Resolves when the gateway should stop. */
  stop: Promise<void>;
  /** Calls `listener` on each request to read the keys file again (SIGHUP). */
  onReload?(listener: () => void): void;
}

const DEFAULT_LISTEN = "127.0.0.1:8080";

const HELP = `Usage: deno task gateway [options]
       deno task gateway keys add --functions a,b [--events 'order.*'] [--rate N]
       deno task gateway keys list
       deno task gateway keys remove ID
       deno task gateway keys init --functions a,b --key-out PATH [--owner UID:GID]
                 [--callback-secret-out PATH]

Serves the functions of the registry over HTTP (docs/gateway.md):
  POST   /functions/{name}   call it; the JSON body is its payload. With
                             'Prefer: respond-async': 202 and a Location
  GET    /calls/{id}         an asynchronous call's status and outcome
  DELETE /calls/{id}         cancel it
  POST   /events             emit a CloudEvent (binary or structured)
  GET    /openapi.json, /healthz, /metrics
Every request but /healthz and /metrics needs 'Authorization: Bearer <key>'.
It calls as the broker user ${GATEWAY_USER}.

Options:
  --listen HOST:PORT   where to listen (default: ${DEFAULT_LISTEN}; port 0: any)
  --keys-file PATH     the API keys (default: $GATEWAY_KEYS_FILE, else
                       ${KEYS_FILE_NAME} in $SECRETS_DIR or secrets/)
  --registry PATH      the function registry (default: functions/registry.yaml)
  --cert PATH, --key PATH
                       serve HTTPS with this certificate and key (PEM)
  --max-body-bytes N   largest request body (default: 1048576)
  --timeout-ms N       a call's timeout unless ?timeout_ms= says (default: 30000)
  --max-connections N  connections served at once (default: 1024)
  --head-deadline-ms N how long a request's headers may take to arrive
                       (default: 5000)
  --body-deadline-ms N how long a request's body may take (default: 10000)
  --cors-origins LIST  origins whose browser pages may call the gateway,
                       separated by commas (default: none: no CORS)
  --callback-hosts LIST
                       hosts a Callback-URL may name, separated by commas
                       ('*.example.com': its subdomains); default: none, so
                       no callbacks
  --callback-allow-private
                       let callbacks reach loopback, private and link-local
                       addresses and the broker (refused by default)
  --calls-name NAME    the record of asynchronous calls and Idempotency-Keys
                       that replicas share: the stream gateway.NAME and the
                       reply queue replies.named.<user>.NAME (default: calls)
  --callback-secret-file PATH
                       sign each callback with the secret in PATH
                       (default: $GATEWAY_CALLBACK_SECRET_FILE; none:
                       callbacks unsigned)
  --trusted-proxies LIST
                       addresses or blocks (10.0.0.0/8) of the proxies in
                       front of the gateway, separated by commas; only
                       their forwarding headers are believed (default: none)
  --forwarded-header NAME
                       the header those proxies write: x-forwarded-for
                       (with X-Forwarded-Proto; the default) or forwarded
  --keys-poll-ms N     how often the keys file is looked at for changes
                       (default: 2000); SIGHUP reads it at once
  --max-auth-failures N
                       answers of 401 or 403 one client address may get
                       before it is refused (429), then one every 5 s
                       (default: 20; 0: no limit)
  --access-log         a line per request on stderr: client, method,
                       path, status (never a key)
${brokerHelp(GATEWAY_USER)}
  -h, --help           show this help

keys add options:
  --functions LIST     functions the key may call, separated by commas ('*': all)
  --events LIST        topic patterns of the events it may emit ('order.*,demo.#')
  --rate N             requests a second (default: ${DEFAULT_SCOPE_LIMITS.rate})
  --burst N            requests at once above the rate (default: ${DEFAULT_SCOPE_LIMITS.burst})
  --in-flight N        calls running at once (default: ${DEFAULT_SCOPE_LIMITS.inFlight})
  --label TEXT         a name for people
The key is printed once, on stdout; the keys file keeps only its SHA-256.
'keys init' makes a first key only when the keys file has none, and writes
it to --key-out (mode 0600, owned by the owner of its folder) instead of
stdout; --owner gives the keys file to the gateway's user (the compose
stack's set-up does this).
A running gateway takes added and removed keys within --keys-poll-ms, or
at once on SIGHUP; a keys file it cannot read leaves its keys as they were.
'keys init --callback-secret-out PATH' also makes a callback secret there
when it has none (mode 0640, group of --owner).

Exit codes:
  0  stopped by Ctrl-C (SIGINT) or SIGTERM; a key made
  2  bad option, configuration or keys file
  3  the broker refused or did not answer
  ${EXIT_HELP_BUG}`;

const SERVE_OPTIONS = {
  listen: { type: "string", default: DEFAULT_LISTEN },
  "keys-file": { type: "string" },
  registry: { type: "string" },
  cert: { type: "string" },
  key: { type: "string" },
  "max-body-bytes": { type: "string", default: "1048576" },
  "timeout-ms": { type: "string", default: "30000" },
  "max-connections": { type: "string", default: "1024" },
  "head-deadline-ms": { type: "string", default: "5000" },
  "body-deadline-ms": { type: "string", default: "10000" },
  "callback-hosts": { type: "string", default: "" },
  "cors-origins": { type: "string", default: "" },
  "callback-allow-private": { type: "boolean", default: false },
  "calls-name": { type: "string", default: "calls" },
  "callback-secret-file": { type: "string" },
  "trusted-proxies": { type: "string", default: "" },
  "forwarded-header": { type: "string", default: "x-forwarded-for" },
  "keys-poll-ms": { type: "string", default: "2000" },
  "access-log": { type: "boolean", default: false },
  "max-auth-failures": { type: "string", default: "20" },
  help: { type: "boolean", short: "h", default: false },
  ...BROKER_OPTIONS,
} as const;

const KEYS_OPTIONS = {
  functions: { type: "string", default: "" },
  events: { type: "string", default: "" },
  rate: { type: "string", default: String(DEFAULT_SCOPE_LIMITS.rate) },
  burst: { type: "string" },
  "in-flight": { type: "string", default: String(DEFAULT_SCOPE_LIMITS.inFlight) },
  label: { type: "string" },
  "keys-file": { type: "string" },
  "key-out": { type: "string" },
  owner: { type: "string" },
  "callback-secret-out": { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

function keysFileOf(given: string | undefined, io: GatewayIo): string {
  return given ?? io.env("GATEWAY_KEYS_FILE") ??
    join(io.env("SECRETS_DIR") ?? "secrets", KEYS_FILE_NAME);
}

function numberFlag(value: string, flag: string): number {
  const number = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !(number > 0)) {
    throw new UsageError(`Cannot use --${flag} '${value}': give a number greater than 0`);
  }
  return number;
}

function listOf(value: string): string[] {
  return value.split(",").map((part) => part.trim()).filter((part) => part !== "");
}

/** The host names of the broker URL(s) `label` names (passwords masked or not). */
function brokerHostsOf(label: string): string[] {
  return label.split(",").flatMap((part) => {
    try {
      return [new URL(part.trim()).hostname.replace(/^\[|\]$/g, "")];
    } catch {
      return [];
    }
  });
}

function parseOwner(value: string): { uid: number; gid: number } {
  const match = /^(\d{1,10}):(\d{1,10})$/.exec(value);
  if (!match) {
    throw new UsageError(`Cannot use --owner '${value}': give UID:GID, such as 65532:65532`);
  }
  return { uid: Number(match[1]), gid: Number(match[2]) };
}

/** `host:port`, `[v6]:port`. */
export function parseListen(value: string): { hostname: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(value);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new UsageError(
      `Cannot listen on '${value}': give HOST:PORT, such as 127.0.0.1:8080 or [::1]:8080`,
    );
  }
  return { hostname: match[1] ?? match[2], port };
}

const RELOAD_NOTE =
  "a running gateway takes the change within its --keys-poll-ms (2 s), or at once on SIGHUP";

async function keysCommand(args: string[], io: GatewayIo): Promise<number> {
  const [action, ...rest] = args;
  const removed = action === "remove" ? rest.shift() : undefined;
  const values = readOptions(rest, KEYS_OPTIONS, "gateway keys");
  const file = keysFileOf(values["keys-file"], io);
  if (action === "remove") {
    if (removed === undefined || removed.startsWith("-")) {
      throw new UsageError("Cannot run 'keys remove' without the key's id: see 'keys list'");
    }
    try {
      await removeKeyFromFile(file, removed);
    } catch (error) {
      if (error instanceof RangeError) throw new UsageError(error.message);
      throw error;
    }
    io.err(`gateway: key ${removed} removed from ${file}; ${RELOAD_NOTE}`);
    return EXIT.passed;
  }
  if (action === "list") {
    for (const record of (await readKeysFile(file)).keys) {
      io.out(
        `${record.id}  functions=${record.functions.join(",") || "-"}  events=${
          record.events.join(",") || "-"
        }  rate=${record.rate}  in-flight=${record.inFlight}${
          record.label ? `  label=${record.label}` : ""
        }`,
      );
    }
    return EXIT.passed;
  }
  if (action !== "add" && action !== "init") {
    throw new UsageError(
      `Cannot do 'keys ${
        action ?? ""
      }': use 'keys add --functions ...', 'keys init', 'keys list' or 'keys remove ID'`,
    );
  }
  const keyOut = values["key-out"];
  const owner = values.owner === undefined ? undefined : parseOwner(values.owner);
  if (action === "init") {
    if (keyOut === undefined) {
      throw new UsageError("Cannot run 'keys init' without --key-out: name the file for the key");
    }
    const secretOut = values["callback-secret-out"];
    if (secretOut !== undefined) await makeCallbackSecret(secretOut, owner?.gid, io);
    if ((await readKeysFile(file)).keys.length > 0) {
      if (owner) await Deno.chown(file, owner.uid, owner.gid);
      io.err(`gateway: ${file} has keys already: kept, no key made`);
      return EXIT.passed;
    }
  }
  const rate = numberFlag(values.rate, "rate");
  let made;
  try {
    made = await newKey({
      functions: listOf(values.functions),
      events: listOf(values.events),
      rate,
      burst: values.burst === undefined
        ? Math.max(1, Math.ceil(rate * 2))
        : numberFlag(values.burst, "burst"),
      inFlight: numberFlag(values["in-flight"], "in-flight"),
    }, values.label);
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) {
      throw new UsageError(error.message);
    }
    throw error;
  }
  if (action === "init") {
    // The key first: a failure after it leaves no key without its record.
    await Deno.writeTextFile(keyOut!, made.key + "\n", { mode: 0o600 });
    await Deno.chmod(keyOut!, 0o600);
    const [folder, written] = await Promise.all([
      Deno.stat(dirname(keyOut!)),
      Deno.stat(keyOut!),
    ]);
    if (folder.uid !== null && folder.gid !== null && written.uid !== folder.uid) {
      await Deno.chown(keyOut!, folder.uid, folder.gid);
    }
  }
  await addKeyToFile(file, made.record);
  if (owner) {
    await Deno.chown(file, owner.uid, owner.gid);
    await Deno.chmod(file, 0o400);
  }
  if (action === "init") {
    io.err(
      `gateway: made key ${made.record.id} for ${
        made.record.functions.join(", ") || "no function"
      }; it is in ${keyOut}`,
    );
    return EXIT.passed;
  }
  io.err(
    `gateway: key ${made.record.id} added to ${file}; ${RELOAD_NOTE}; the key is printed once, below`,
  );
  io.out(made.key);
  return EXIT.passed;
}

/**
 * Writes a callback secret to `file` unless it has one: owned by the
 * owner of its folder (who gives it to the receivers), readable by group
 * `gid` (the gateway's), mode 0640.
 */
async function makeCallbackSecret(
  file: string,
  gid: number | undefined,
  io: GatewayIo,
): Promise<void> {
  try {
    await readCallbackSecret(file);
    return;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw new UsageError((error as Error).message);
  }
  await Deno.writeTextFile(file, newCallbackSecret() + "\n", { mode: 0o600, createNew: true });
  const folder = await Deno.stat(dirname(file));
  if (folder.uid !== null) await Deno.chown(file, folder.uid, gid ?? folder.gid);
  await Deno.chmod(file, 0o640);
  io.err(`gateway: made the callback secret in ${file}; receivers check Gateway-Signature with it`);
}

function forwardedHeaderOf(value: string): ForwardedHeader {
  if (value === "x-forwarded-for" || value === "forwarded") return value;
  throw new UsageError(
    `Cannot use --forwarded-header '${value}': give x-forwarded-for or forwarded`,
  );
}

async function serve(args: string[], io: GatewayIo): Promise<number> {
  const values = readOptions(args, SERVE_OPTIONS, "gateway");
  if (values.help) {
    io.out(HELP);
    return EXIT.passed;
  }
  const { hostname, port } = parseListen(values.listen);
  if ((values.cert === undefined) !== (values.key === undefined)) {
    throw new UsageError("Cannot serve HTTPS with only one of --cert and --key: give both");
  }
  let trustedProxies: Cidr[];
  try {
    trustedProxies = parseCidrs(values["trusted-proxies"]);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const forwardedHeader = forwardedHeaderOf(values["forwarded-header"]);
  const keysPollMs = numberFlag(values["keys-poll-ms"], "keys-poll-ms");
  const maxAuthFailures = wholeNumberFlag(
    values["max-auth-failures"],
    "--max-auth-failures",
    20,
    0,
    1_000_000,
  );
  const secretFile = values["callback-secret-file"] ?? io.env("GATEWAY_CALLBACK_SECRET_FILE");
  let secret: string | undefined;
  if (secretFile !== undefined) {
    try {
      secret = await readCallbackSecret(secretFile);
    } catch (error) {
      throw new UsageError(
        error instanceof RangeError
          ? error.message
          : `Cannot read the callback secret file '${secretFile}' (${
            (error as Error).name
          }): make it (openssl rand -hex 32 > FILE) or drop --callback-secret-file`,
      );
    }
  }
  const keysFile = keysFileOf(values["keys-file"], io);
  let keysWatch: KeysWatch;
  try {
    keysWatch = await watchKeysFile(keysFile, {
      intervalMs: keysPollMs,
      log: (line) => io.err(line),
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const keyRing = keysWatch.ring;
  if (keyRing.size === 0) {
    io.err(
      `gateway: no API keys in ${keysFile}: every call is refused until you add one (deno task gateway keys add --functions ...)`,
    );
  }
  let up = true;
  let client: TaskClient;
  try {
    client = await connect({
      ...brokerSettings(values),
      registry: values.registry,
      user: GATEWAY_USER,
      connectionName: "gateway",
      timeoutMs: numberFlag(values["timeout-ms"], "timeout-ms"),
      env: io.env,
      onConnectionEvent: (event) => {
        up = event.kind === "reconnected";
        io.err(`gateway: broker connection ${event.kind}`);
      },
    });
  } catch (error) {
    await keysWatch.stop();
    throw error;
  }
  if (!CALLER_NAME_PATTERN.test(values["calls-name"])) {
    await keysWatch.stop();
    await client.close();
    throw new UsageError(
      `Cannot use --calls-name '${
        values["calls-name"].slice(0, 80)
      }': give 1 to 64 of a-z, 0-9, _ and -, starting with a letter or digit`,
    );
  }
  const shared = await openSharedCalls({
    settings: brokerSettings(values),
    names: BROKER_FLAG_NAMES,
    env: io.env,
    user: GATEWAY_USER,
    functions: client.functions,
    name: values["calls-name"],
    log: io.err,
  }).catch(async (error) => {
    await keysWatch.stop();
    await client.close();
    throw error;
  });
  const gateway = createGateway({
    backend: client,
    calls: shared.store,
    keys: keyRing,
    maxBodyBytes: numberFlag(values["max-body-bytes"], "max-body-bytes"),
    timeoutMs: numberFlag(values["timeout-ms"], "timeout-ms"),
    bodyDeadlineMs: numberFlag(values["body-deadline-ms"], "body-deadline-ms"),
    connected: () => up,
    corsOrigins: listOf(values["cors-origins"]),
    maxAuthFailures,
    callbacks: {
      policy: {
        hosts: listOf(values["callback-hosts"]).map((host) => host.toLowerCase()),
        allowPrivate: values["callback-allow-private"],
        brokerHosts: brokerHostsOf(client.broker),
      },
      ...(secret !== undefined && { secret }),
    },
    log: (line) => {
      if (values["access-log"] || line.startsWith("gateway:")) io.err(line);
    },
  });
  io.onReload?.(() => void keysWatch.reload());
  const front = await GatewayFront.start(gateway.handler, {
    hostname,
    port,
    maxConnections: numberFlag(values["max-connections"], "max-connections"),
    headDeadlineMs: numberFlag(values["head-deadline-ms"], "head-deadline-ms"),
    bodyDeadlineMs: numberFlag(values["body-deadline-ms"], "body-deadline-ms"),
    trustedProxies,
    forwardedHeader,
    ...(values.cert !== undefined && {
      tls: {
        cert: await Deno.readTextFile(values.cert),
        key: await Deno.readTextFile(values.key!),
      },
    }),
  });
  io.out(
    `gateway: listening on ${values.cert ? "https" : "http"}://${
      front.hostname.includes(":") ? `[${front.hostname}]` : front.hostname
    }:${front.port} as broker user ${client.user}, ${keyRing.size} key${
      keyRing.size === 1 ? "" : "s"
    }, functions ${[...client.functions.keys()].join(", ")}${
      secret === undefined ? "" : ", callbacks signed"
    }${
      trustedProxies.length
        ? `, trusting proxies ${listOf(values["trusted-proxies"]).join(",")}`
        : ""
    }`,
  );
  await io.stop;
  await keysWatch.stop();
  await front.close();
  await shared.close();
  await client.close();
  return EXIT.passed;
}

/** Runs the gateway with `args` until `io.stop`; resolves with the exit code. */
export async function main(args: string[], io: GatewayIo): Promise<number> {
  try {
    if (args[0] === "keys") return await keysCommand(args.slice(1), io);
    return await serve(args, io);
  } catch (error) {
    const code = exitCodeOf(error);
    if (code !== undefined) {
      io.err((error as Error).message);
      return code;
    }
    io.err(
      `Bug: deno task gateway stopped on an unexpected error (exit ${EXIT.bug}). Please report it with what follows:\n${
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
    // A variable the image does not allow is one not set.
    env: (name) => {
      try {
        return Deno.env.get(name);
      } catch {
        return undefined;
      }
    },
    stop,
    onReload: (listener) => Deno.addSignalListener("SIGHUP", listener),
  });
  Deno.exit(code);
}
