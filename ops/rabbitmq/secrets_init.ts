/**
 * The `secrets-init` service of compose.yaml: makes sure a directory holds a
 * password for every broker user, and a RabbitMQ definitions file that
 * creates those users with their permissions. It runs before the broker on
 * every `docker compose up`:
 *
 * - a password file that exists is kept (bring your own, or keep the ones
 *   made before); a missing or empty one gets a new random password;
 * - the directory is closed to everyone but its owner (mode 0700);
 * - each file gets the owner and mode its reader needs: the workers' files
 *   belong to the user the workers run as (`--worker-owner`, mode 0400), the
 *   dispatcher's, the operator's and the dashboard's to the directory's
 *   owner (mode 0600), so that whoever owns the directory can run those
 *   tools on the host;
 * - the cluster's Erlang cookie, `erlang.cookie`, is made once (mode 0400)
 *   and then left as it is (see `erlang_cookie.ts`);
 * - `definitions.json` is rewritten in place (a running broker has it
 *   mounted, see docs/security.md, "Rotating passwords"); it holds salted
 *   hashes, no passwords, and is readable by all (the broker runs as its own
 *   user). It locks `guest` out: a new password nobody keeps, no permissions.
 *
 * It prints what it did, never a password.
 *
 *   deno run --allow-read=secrets --allow-write=secrets ops/rabbitmq/secrets_init.ts \
 *     --dir secrets --worker-owner 65532:65532 --function USER=QUEUE \
 *     --celery-function USER=QUEUE --celery-client
 *
 * `--function` is a Deno function's: the broker user of its workers and its
 * queue, `--celery-function` a function's served by a Celery worker (that
 * worker's user, read by the Celery worker container as the workers' files
 * are), and `--celery-client` adds the user of Celery clients that call the
 * Deno functions (`celery_client`, read by the directory's owner, as the
 * dispatcher's). `--scheduler` adds the user of `deno task scheduler`
 * (read by the scheduler containers, as the workers' files are), which may
 * bind the queues named by `--scheduled QUEUE` to the schedule exchange.
 * `--gateway` adds the user of `deno task gateway` (read by the gateway
 * container, as the workers' files are), which calls every `--function`.
 * compose.yaml's flags are made from functions/registry.yaml by `deno task
 * manifests`, where a function's user is its name unless its entry names
 * another.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  ADMIN_PERMISSIONS,
  buildDefinitions,
  celeryClientPermissions,
  celeryWorkerPermissions,
  DASHBOARD_PERMISSIONS,
  dispatcherPermissions,
  type FunctionQueue,
  gatewayPermissions,
  NAME_PATTERN,
  OPERATOR_PERMISSIONS,
  type Permissions,
  schedulerPermissions,
  type TopicPermission,
  topicPermissionsOf,
  type User,
  USER_LIMITS,
  workerPermissions,
} from "./definitions.ts";
import { RETRY_DELAYS_MS } from "../../core/contract/names.ts";
import { isEventType, topicPatternProblem } from "../../core/contract/cloud_events.ts";
import {
  ADMIN_USER,
  CELERY_CLIENT_USER,
  DASHBOARD_USER,
  DISPATCHER_USER,
  GATEWAY_USER,
  GUEST_USER,
  OPERATOR_USER,
  SCHEDULER_USER,
  STACK_USERS,
} from "../../core/contract/users.ts";
import { ensureCookie, ERLANG_COOKIE_FILE } from "./erlang_cookie.ts";
import { generatePassword, hashPassword } from "./hash_password.ts";

/** A file owner, as numbers. */
export interface Owner {
  uid: number;
  gid: number;
}

/** Options for {@linkcode initSecrets}. */
export interface InitSecretsOptions {
  /** The directory of the password files and `definitions.json`; it must exist. */
  dir: string;
  /** Each function gets a user of its name with permissions on its queue. */
  functions: readonly FunctionQueue[];
  /**
   * Functions served by Celery workers: each gets a user of its name with a
   * Celery worker's permissions on its queue.
   * @default {[]}
   */
  celeryFunctions?: readonly FunctionQueue[];
  /**
   * Add {@linkcode CELERY_CLIENT_USER}, which may call the Deno functions
   * of `functions` through their Celery routes.
   * @default {false}
   */
  celeryClient?: boolean;
  /**
   * Add {@linkcode SCHEDULER_USER}, which fires ticks into the queues of
   * the functions the registry schedules (`queues`).
   */
  scheduler?: { queues: readonly string[] };
  /**
   * Add {@linkcode GATEWAY_USER}, `deno task gateway`, which calls the
   * functions of `functions` and emits what `events.emitters` grants it.
   * @default {false}
   */
  gateway?: boolean;
  /**
   * The workers' retry ladder: each Deno function's user may then declare
   * exactly these retry queues (see `workerPermissions`).
   * @default {undefined} any delay
   */
  retryDelaysMs?: readonly number[];
  /** Who may read the workers' password files; left as created when absent. */
  workerOwner?: Owner;
  /**
   * Events, by broker user (docs/events.md): each Deno function's triggers
   * and emits, and the emitters' grants (`events.emitters`), made into
   * topic permissions on the events exchange.
   * @default {{}}
   */
  events?: EventsByUser;
  /**
   * Where progress lines go.
   * @default {console.log}
   */
  log?: (line: string) => void;
}

/** What each broker user may do with events, as the registry says. */
export interface EventsByUser {
  triggers?: Record<string, readonly string[]>;
  emits?: Record<string, string>;
  emitters?: Record<string, readonly string[]>;
}

/** What {@linkcode initSecrets} did. */
export interface InitSecretsReport {
  /** Password files it made. */
  created: string[];
  /** Password files it kept. */
  kept: string[];
  /** Users in `definitions.json`. */
  users: string[];
  /** Whether the Erlang cookie was made now or kept. */
  cookie: "created" | "kept";
}

/** The name of a user's password file. */
export function passwordFileOf(user: string): string {
  return `${user}.password`;
}

/** The name of the definitions file in the directory. */
export const DEFINITIONS_FILE = "definitions.json";

interface Account {
  user: string;
  tags: string[];
  permissions: Permissions;
  topicPermission?: TopicPermission;
  /** Read by a worker container, else by the directory's owner. */
  worker: boolean;
}

function accountsFor(options: InitSecretsOptions): Account[] {
  const { functions } = options;
  const events = options.events ?? {};
  const own = <T>(table: Record<string, T> | undefined, user: string): T | undefined =>
    table && Object.hasOwn(table, user) ? table[user] : undefined;
  const seen = new Set<string>(STACK_USERS);
  const queues = new Set<string>();
  // The dispatcher checks every function's queue passively, Celery's too.
  const checked = [...functions, ...options.celeryFunctions ?? []].map((f) => f.queue);
  const accounts: Account[] = [
    { user: ADMIN_USER, tags: ["administrator"], permissions: ADMIN_PERMISSIONS, worker: false },
    {
      user: DISPATCHER_USER,
      tags: [],
      permissions: dispatcherPermissions(checked.filter((q) => NAME_PATTERN.test(q))),
      topicPermission: topicPermissionsOf({
        emitterPatterns: own(events.emitters, DISPATCHER_USER),
      }),
      worker: false,
    },
    { user: OPERATOR_USER, tags: [], permissions: OPERATOR_PERMISSIONS, worker: false },
    { user: DASHBOARD_USER, tags: [], permissions: DASHBOARD_PERMISSIONS, worker: false },
  ];
  // Deno functions' workers and Celery workers alike: one user each, named after the function.
  const retryDelaysMs = options.retryDelaysMs;
  const served = [
    ...functions.map((f) => ({
      ...f,
      permissionsOf: (queue: string) =>
        workerPermissions(queue, {
          retryDelaysMs,
          triggers: own(events.triggers, f.name),
          emits: own(events.emits, f.name),
        }),
      topicPermission: own(events.triggers, f.name) || own(events.emits, f.name)
        ? topicPermissionsOf({
          triggers: own(events.triggers, f.name),
          emits: own(events.emits, f.name),
        })
        : undefined,
    })),
    ...(options.celeryFunctions ?? []).map((f) => ({
      ...f,
      permissionsOf: celeryWorkerPermissions,
      topicPermission: undefined,
    })),
  ];
  for (const { name, queue, permissionsOf, topicPermission } of served) {
    for (const [what, value] of [["function", name], ["queue", queue]]) {
      if (!NAME_PATTERN.test(value)) {
        throw new TypeError(
          `Cannot create a user for ${what} '${value}' as it is not lower_snake_case: use letters, digits and _ (at most 63)`,
        );
      }
    }
    if (seen.has(name)) {
      throw new TypeError(
        `Cannot create a user for function '${name}' as that user exists already: give each function a name of its own, other than ${
          STACK_USERS.join(", ")
        }`,
      );
    }
    if (queues.has(queue)) {
      throw new TypeError(
        `Cannot create a user for function '${name}' as queue '${queue}' belongs to another function: give it a queue of its own`,
      );
    }
    seen.add(name);
    queues.add(queue);
    accounts.push({
      user: name,
      tags: [],
      permissions: permissionsOf(queue),
      ...(topicPermission && { topicPermission }),
      worker: true,
    });
  }
  if (options.scheduler) {
    accounts.push({
      user: SCHEDULER_USER,
      tags: [],
      permissions: schedulerPermissions(options.scheduler.queues),
      // Read by the scheduler containers, which run as the workers do.
      worker: true,
    });
  }
  if (options.gateway) {
    accounts.push({
      user: GATEWAY_USER,
      tags: [],
      permissions: gatewayPermissions(checked.filter((q) => NAME_PATTERN.test(q))),
      topicPermission: topicPermissionsOf({
        emitterPatterns: own(events.emitters, GATEWAY_USER),
      }),
      // Read by the gateway container, which runs as the workers do.
      worker: true,
    });
  }
  if (options.celeryClient) {
    accounts.push({
      user: CELERY_CLIENT_USER,
      tags: [],
      permissions: celeryClientPermissions(functions.map((f) => f.queue)),
      worker: false,
    });
  }
  return accounts;
}

async function readPassword(path: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  const password = text.replace(/[\r\n]+$/, "");
  if (password.trim() === "") return undefined;
  if (/[\r\n]/.test(password)) {
    throw new TypeError(
      `Cannot use '${path}' as a password as it has more than one line: write the password alone`,
    );
  }
  return password;
}

/** Writes `text` to `path` at once: readers see the old file or the new one, never half. */
async function writeAtomically(path: string, text: string, mode: number): Promise<void> {
  const temporary = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    await Deno.writeTextFile(temporary, text, { mode });
    await Deno.chmod(temporary, mode);
    await Deno.rename(temporary, path);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
}

async function settle(path: string, owner: Owner | undefined, mode: number): Promise<void> {
  const info = await Deno.stat(path);
  if (owner && (info.uid !== owner.uid || info.gid !== owner.gid)) {
    await Deno.chown(path, owner.uid, owner.gid);
  }
  if (((info.mode ?? 0) & 0o777) !== mode) await Deno.chmod(path, mode);
}

function describe(owner: Owner | undefined, mode: number): string {
  const who = owner ? `owner ${owner.uid}:${owner.gid}, ` : "";
  return `(${who}mode ${mode.toString(8).padStart(4, "0")})`;
}

/** Creates the missing passwords and writes the definitions; see the module documentation. */
export async function initSecrets(options: InitSecretsOptions): Promise<InitSecretsReport> {
  const log = options.log ?? ((line: string) => console.log(line));
  const accounts = accountsFor(options);
  let dirInfo: Deno.FileInfo;
  try {
    dirInfo = await Deno.stat(options.dir);
  } catch (error) {
    throw new TypeError(
      `Cannot keep secrets in '${options.dir}' as it cannot be opened (${error}): create the directory`,
      { cause: error },
    );
  }
  if (!dirInfo.isDirectory) {
    throw new TypeError(`Cannot keep secrets in '${options.dir}' as it is not a directory`);
  }
  const dirOwner = dirInfo.uid === null ? undefined : { uid: dirInfo.uid, gid: dirInfo.gid! };
  // The files inside belong to the users of containers (the workers' 65532,
  // the broker's), whose uids other accounts of this machine may hold: a
  // directory only its owner may enter keeps those accounts out. Compose
  // mounts the files themselves, which needs no access to the directory.
  if (((dirInfo.mode ?? 0) & 0o077) !== 0) {
    await Deno.chmod(options.dir, 0o700);
    log(`secrets-init: closed ${options.dir} to everyone but its owner (mode 0700)`);
  }
  const report: InitSecretsReport = { created: [], kept: [], users: [], cookie: "kept" };
  const users: User[] = [];
  for (const account of accounts) {
    const file = passwordFileOf(account.user);
    const path = `${options.dir}/${file}`;
    const [owner, mode] = account.worker ? [options.workerOwner, 0o400] : [dirOwner, 0o600];
    let password = await readPassword(path);
    if (password === undefined) {
      password = generatePassword();
      await writeAtomically(path, `${password}\n`, mode);
      report.created.push(file);
      await settle(path, owner, mode);
      log(`secrets-init: created ${file} ${describe(owner, mode)}`);
    } else {
      report.kept.push(file);
      await settle(path, owner, mode);
      log(`secrets-init: kept ${file} ${describe(owner, mode)}`);
    }
    users.push({
      name: account.user,
      passwordHash: await hashPassword(password),
      tags: account.tags,
      permissions: account.permissions,
      // A function may be named "constructor": only the table's own keys count.
      limits: Object.hasOwn(USER_LIMITS, account.user) ? USER_LIMITS[account.user] : undefined,
      topicPermission: account.topicPermission,
    });
    report.users.push(account.user);
  }
  // Locks out guest on a broker whose data predates these definitions.
  users.push({
    name: GUEST_USER,
    passwordHash: await hashPassword(generatePassword()),
    tags: [],
  });
  report.cookie = await ensureCookie(options.dir);
  log(
    report.cookie === "created"
      ? `secrets-init: created ${ERLANG_COOKIE_FILE} (mode 0400), the broker nodes' shared secret`
      : `secrets-init: kept ${ERLANG_COOKIE_FILE} as it is`,
  );
  const definitions = `${JSON.stringify(buildDefinitions(users), null, 2)}\n`;
  const definitionsPath = `${options.dir}/${DEFINITIONS_FILE}`;
  // In place, not by rename: a running broker mounts this very file, and
  // `rabbitmqctl import_definitions` must see the new content (rotation).
  await Deno.writeTextFile(definitionsPath, definitions, { mode: 0o644 });
  await settle(definitionsPath, dirOwner, 0o644);
  log(
    `secrets-init: wrote ${DEFINITIONS_FILE} (password hashes only) for users ${
      report.users.join(", ")
    }, and ${GUEST_USER} locked out (a password nobody keeps)`,
  );
  return report;
}

function parseOwner(text: string): Owner {
  const match = text.match(/^(\d+):(\d+)$/);
  if (!match) {
    throw new TypeError(`Cannot use --worker-owner '${text}': give uid:gid, such as 65532:65532`);
  }
  return { uid: Number(match[1]), gid: Number(match[2]) };
}

function parseFunction(text: string, flag: string): FunctionQueue {
  const [name, queue, ...rest] = text.split("=");
  if (!name || !queue || rest.length > 0) {
    throw new TypeError(
      `Cannot use ${flag} '${text}': give user=queue, such as task_a=queue_a`,
    );
  }
  return { name, queue };
}

function eventTypeProblem(type: string): string | undefined {
  return isEventType(type) ? undefined : `'${type}' is not an event type, such as order.priced`;
}

/** `user=a,b` flags, each pattern checked: user to its list. */
function parseGrants(
  texts: readonly string[],
  flag: string,
  problemOf: (pattern: string) => string | undefined,
): Record<string, string[]> {
  const grants: Record<string, string[]> = {};
  for (const text of texts) {
    const at = text.indexOf("=");
    const user = text.slice(0, at);
    const list = text.slice(at + 1).split(",").filter((p) => p !== "");
    if (at < 1 || !NAME_PATTERN.test(user) || list.length === 0) {
      throw new TypeError(
        `Cannot use ${flag} '${text}': give user=pattern[,pattern...], such as task_a=order.created`,
      );
    }
    for (const pattern of list) {
      const problem = problemOf(pattern);
      if (problem) throw new TypeError(`Cannot use ${flag} '${text}' as ${problem}`);
    }
    grants[user] = [...(Object.hasOwn(grants, user) ? grants[user] : []), ...list];
  }
  return grants;
}

/** Runs the command line; resolves with the exit code. */
export async function main(args: string[]): Promise<number> {
  try {
    const { values } = parseArgs({
      args,
      strict: true,
      options: {
        dir: { type: "string" },
        function: { type: "string", multiple: true, default: [] },
        "celery-function": { type: "string", multiple: true, default: [] },
        "celery-client": { type: "boolean", default: false },
        scheduler: { type: "boolean", default: false },
        gateway: { type: "boolean", default: false },
        scheduled: { type: "string", multiple: true, default: [] },
        "worker-owner": { type: "string" },
        triggers: { type: "string", multiple: true, default: [] },
        emits: { type: "string", multiple: true, default: [] },
        emitter: { type: "string", multiple: true, default: [] },
      },
    });
    if (!values.dir) throw new TypeError("Cannot run without --dir: name the secrets directory");
    await initSecrets({
      dir: values.dir,
      functions: values.function.map((text) => parseFunction(text, "--function")),
      celeryFunctions: values["celery-function"].map((text) =>
        parseFunction(text, "--celery-function")
      ),
      celeryClient: values["celery-client"],
      scheduler: values.scheduler ? { queues: values.scheduled } : undefined,
      gateway: values.gateway,
      // Each worker declares exactly these retry queues while it starts.
      retryDelaysMs: RETRY_DELAYS_MS,
      workerOwner: values["worker-owner"] ? parseOwner(values["worker-owner"]) : undefined,
      events: {
        triggers: parseGrants(values.triggers, "--triggers", topicPatternProblem),
        emits: Object.fromEntries(
          Object.entries(parseGrants(values.emits, "--emits", eventTypeProblem)).map((
            [user, [type]],
          ) => [user, type]),
        ),
        emitters: parseGrants(values.emitter, "--emitter", topicPatternProblem),
      },
    });
    return 0;
  } catch (error) {
    console.error(`secrets-init: ${(error as Error).message}`);
    return error instanceof TypeError ? 2 : 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
