/**
 * A password full of characters that mean something in a URL, given
 * through a password file, must appear in no output of a real run: not on
 * stdout or stderr, not in the results JSON, the JUnit XML or the HTML
 * report, in no form (raw, percent-encoded, form-encoded). The run uses the
 * host's RabbitMQ with a user made for it through the management API, and
 * two real workers that run as that user too.
 */

import assert from "node:assert/strict";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { deleteFunctionQueues, uniqueName } from "./_helpers.ts";
import { AMQP_URL, IN_CI, NEEDS_RABBITMQ } from "./_infra.ts";
import { runDeno, startDeno, workerArgs } from "./_processes.ts";
import { withTempDir } from "./_temp_dir.ts";

/** Every URL-special character, a space and a non-ASCII letter. */
const PASSWORD = "pw /@:#?%&+ é-and-more";

const MANAGEMENT = Deno.env.get("RABBITMQ_MANAGEMENT_URL") || "http://127.0.0.1:15672";

/** Calls the management API as the user of AMQP_URL (the host's guest is an administrator). */
async function manage(method: string, path: string, body?: unknown): Promise<Response> {
  const url = new URL(AMQP_URL);
  const auth = btoa(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`);
  const response = await fetch(`${MANAGEMENT}/api/${path}`, {
    method,
    headers: { authorization: `Basic ${auth}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  await response.body?.cancel();
  return response;
}

async function managementAnswers(): Promise<boolean> {
  try {
    return (await manage("GET", "whoami")).ok;
  } catch {
    return false;
  }
}

/** Every form the password could take in output. */
function forms(password: string): string[] {
  const userinfo = new URL("amqp://u@h");
  userinfo.password = password;
  return [
    ...new Set([
      password,
      encodeURIComponent(password),
      encodeURI(password),
      userinfo.password,
      encodeURIComponent(password).replaceAll("%20", "+"),
      new URLSearchParams({ p: password }).toString().slice(2),
    ]),
  ];
}

const WITHOUT_MANAGEMENT = !NEEDS_RABBITMQ && !IN_CI && !(await managementAnswers());
if (WITHOUT_MANAGEMENT) {
  console.warn(`Ignoring the password test: no RabbitMQ management API at ${MANAGEMENT}.`);
}

Deno.test({
  name: "a password with / @ : # ? % & + space é, from a file, appears in no output of a run",
  ignore: NEEDS_RABBITMQ || WITHOUT_MANAGEMENT,
  async fn() {
    const user = uniqueName("leak_user");
    const [qa, qb] = [uniqueName("leak_a"), uniqueName("leak_b")];
    const created = await manage("PUT", `users/${user}`, { password: PASSWORD, tags: "" });
    assert.ok(created.ok, `creating ${user}: ${created.status}`);
    const permitted = await manage("PUT", `permissions/%2F/${user}`, {
      configure: ".*",
      write: ".*",
      read: ".*",
    });
    assert.ok(permitted.ok, `permissions of ${user}: ${permitted.status}`);
    const { hostname, port } = new URL(AMQP_URL);
    const url = `amqp://${user}@${hostname}:${port || 5672}`;
    try {
      await withTempDir(async (dir) => {
        const passwordFile = `${dir}/password`;
        await Deno.writeTextFile(passwordFile, `${PASSWORD}\n`);
        const workerEnv = { AMQP_URL: url, AMQP_PASSWORD_FILE: passwordFile, METRICS_PORT: "0" };
        const workers = [
          startDeno(workerArgs("task_a", [passwordFile]), { ...workerEnv, QUEUE: qa }),
          startDeno(workerArgs("task_b", [passwordFile]), { ...workerEnv, QUEUE: qb }),
        ];
        const outputs: [string, string][] = [];
        try {
          // A loaded machine (other suites share it) can take long to start a worker.
          for (const worker of workers) await worker.waitForLine(/"msg":"Consuming"/, 30_000);
          const config = `${dir}/test-config.yml`;
          // One task passes, one fails: error paths print as much as success paths.
          await Deno.writeTextFile(
            config,
            `functions:\n  task_a: { queue: ${qa} }\n  task_b: { queue: ${qb} }\n` +
              `scenarios:\n  mixed:\n    tasks:\n` +
              `      - { task: task_a, payload: { work_ms: 0 } }\n` +
              `      - { task: task_b, retries: 0, payload: { fail_attempts: 1, work_ms: 0 } }\n`,
          );
          const files = {
            json: `${dir}/out/run.json`,
            junit: `${dir}/out/junit.xml`,
            html: `${dir}/out/report.html`,
          };
          const broker = ["--broker", url, "--password-file", passwordFile];
          const dispatch = await runDeno([
            "task",
            "dispatch",
            "--config",
            config,
            ...broker,
            "--out",
            files.json,
            "--junit",
            files.junit,
            "--html",
            files.html,
            "--log-level",
            "debug",
          ]);
          assert.equal(dispatch.code, 1, dispatch.stdout + dispatch.stderr);
          assert.match(dispatch.stdout, /^Broker: amqp:\/\/leak_user_\w+:\*\*\*@/m);
          assert.match(dispatch.stdout, /^Passed: 1\/2/m);
          outputs.push(["dispatch stdout", dispatch.stdout], ["dispatch stderr", dispatch.stderr]);
          for (const [name, path] of Object.entries(files)) {
            outputs.push([name, await Deno.readTextFile(path)]);
          }
          const json = await runDeno([
            "task",
            "dispatch",
            "--config",
            config,
            ...broker,
            "--json",
            "--no-save",
            "--log-level",
            "debug",
            "--log-format",
            "json",
          ]);
          assert.equal(json.code, 1, json.stderr);
          outputs.push(["--json stdout", json.stdout], ["--json stderr", json.stderr]);
          const status = await runDeno(["task", "status", "--config", config, ...broker]);
          assert.equal(status.code, 0, status.stdout + status.stderr);
          outputs.push(["status stdout", status.stdout], ["status stderr", status.stderr]);
          // The same password for a user that does not exist: the broker refuses.
          const refused = await runDeno([
            "task",
            "dispatch",
            "--config",
            config,
            "--broker",
            `amqp://${user}_nobody@${hostname}:${port || 5672}`,
            "--password-file",
            passwordFile,
            "--no-save",
          ]);
          assert.equal(refused.code, 3, refused.stdout + refused.stderr);
          outputs.push(["refused stdout", refused.stdout], ["refused stderr", refused.stderr]);
        } finally {
          for (const worker of workers) await worker.stop();
          outputs.push(
            ...workers.map((w, i) => [`worker ${i} log`, w.lines.join("\n")] as [string, string]),
          );
        }
        for (const [name, text] of outputs) {
          for (const form of forms(PASSWORD)) {
            assert.ok(
              !text.includes(form),
              `${name} shows the password as ${JSON.stringify(form)}`,
            );
          }
        }
      });
    } finally {
      await manage("DELETE", `users/${user}`);
      const broker = await connectAmqp(AMQP_URL, { connectionName: "test-cleanup" });
      try {
        await deleteFunctionQueues(broker, qa, qb);
      } finally {
        await broker.close();
      }
    }
  },
});
