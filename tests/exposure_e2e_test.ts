/**
 * End-to-end: what the compose stack lets out. A container on the stack's
 * network learns no queue name from the broker's Prometheus port (the
 * plugin is not enabled), every container's log is rotated, the broker's
 * limits are those compose.yaml sets, and no password reaches an image: not
 * a worker image built while the stack's passwords exist, nor, through the
 * build context, anything under `secrets/` (.dockerignore).
 */

import assert from "node:assert/strict";
import { connectAmqp } from "../core/broker/amqp/connect_amqp.ts";
import { type ContainerInfo, createStack, docker } from "./_compose.ts";
import { NEEDS_DOCKER } from "./_infra.ts";
import { uniqueName, waitFor } from "./_helpers.ts";
import { holdEngine } from "./_engine_lock.ts";
import { runCommand } from "./_command.ts";
import { readSecret } from "./_docker.ts";

const ROOT = new URL("../", import.meta.url);
const DENO_IMAGE = Deno.env.get("DENO_IMAGE") ?? "denoland/deno:distroless-2.9.6";

/** The strings of `needles` that occur anywhere in the file `path` (binary safe). */
async function found(path: string, needles: string[]): Promise<string[]> {
  const patterns = await Deno.makeTempFile({ prefix: "needles_" });
  try {
    await Deno.writeTextFile(patterns, needles.join("\n") + "\n");
    const grep = await runCommand("grep", ["-a", "-o", "-F", "-f", patterns, path], {
      timeoutMs: 120_000,
    });
    assert.ok(grep.code <= 1, `grep failed: ${grep.stderr}`);
    return [...new Set(grep.stdout.split("\n").filter(Boolean))].sort();
  } finally {
    await Deno.remove(patterns);
  }
}

/** `docker save`s `image` into a temporary tar file: layers uncompressed, files and names in clear. */
async function saved(image: string): Promise<string> {
  const tar = await Deno.makeTempFile({ prefix: "image_", suffix: ".tar" });
  await docker(["save", "-o", tar, image], {}, { timeoutMs: 300_000 });
  return tar;
}

/** What a program in a container on `network` gets from each URL: a status and body, or the error. */
async function fetchFrom(network: string, urls: string[]): Promise<Record<string, string>> {
  const script = `
    const out = {};
    for (const url of ${JSON.stringify(urls)}) {
      try {
        const response = await fetch(url, { signal: AbortSignal.timeout(10000) });
        out[url] = response.status + " " + (await response.text());
      } catch (error) {
        out[url] = "error " + error.name + ": " + error.message + " " + String(error.cause ?? "");
      }
    }
    console.log(JSON.stringify(out));`;
  const run = await docker(["run", "--rm", "--network", network, DENO_IMAGE, "eval", script]);
  return JSON.parse(run.stdout.split("\n").at(-1)!);
}

Deno.test({
  name:
    "the compose stack shows no queue names on :15692, rotates logs and keeps passwords out of images",
  ignore: NEEDS_DOCKER,
  async fn(t) {
    await using _engine = await holdEngine("shared");
    const stack = await createStack("exposure", { env: { DENO_IMAGE } });
    // A password where a developer keeps them: in the build context's secrets/.
    const canaryName = `zz-canary-${crypto.randomUUID()}.password`;
    const canary = `canary-${crypto.randomUUID()}`;
    const canaryFile = new URL(`secrets/${canaryName}`, ROOT);
    await Deno.writeTextFile(canaryFile, canary);
    const tars: string[] = [];
    try {
      await stack.compose(["up", "-d", "--build", "rabbitmq", "worker-a"]);
      let broker: Awaited<ReturnType<typeof connectAmqp>> | undefined;
      await waitFor(
        async () => {
          broker ??= await connectAmqp(await stack.url("admin"), { timeoutMs: 2000 }).catch(() =>
            undefined
          );
          return broker !== undefined;
        },
        "the broker accepts connections",
        90_000,
        500,
      );
      // A queue whose name a metrics endpoint would list.
      const secretQueue = uniqueName("replies_exposure");
      await broker!.declareQueue(secretQueue);
      try {
        await t.step(
          "a container on the stack's network gets no queue names from :15692",
          async () => {
            const network = `${stack.project}_default`;
            const urls = [
              "/metrics",
              "/metrics/per-object",
              "/metrics/detailed?family=queue_coarse_metrics",
            ]
              .map((path) => `http://rabbitmq:15692${path}`);
            const management = "http://rabbitmq:15672/api/queues";
            const answers = await fetchFrom(network, [...urls, management]);
            // The network path works: the management API answers, with a password only.
            assert.match(answers[management], /^401 /, JSON.stringify(answers));
            for (const url of urls) {
              assert.match(
                answers[url],
                /^error .*(refused|Connection refused)/i,
                `${url}: ${answers[url]}`,
              );
              assert.ok(!answers[url].includes(secretQueue), `${url} lists ${secretQueue}`);
            }
            const plugins = await stack.compose([
              "exec",
              "-T",
              "rabbitmq",
              "rabbitmq-plugins",
              "list",
              "--enabled",
              "--minimal",
            ]);
            assert.deepEqual(
              plugins.stdout.split("\n").map((line) => line.trim()).filter((l) =>
                /^rabbitmq_/.test(l)
              ),
              ["rabbitmq_management"],
              "the management plugin only, as ops/rabbitmq/enabled_plugins says",
            );
          },
        );

        await t.step("every container's log is rotated, and the broker has 256 pids", async () => {
          const ids = [
            ...await stack.containers("rabbitmq"),
            ...await stack.containers("worker-a"),
          ];
          assert.equal(ids.length, 2);
          for (const id of ids) {
            const info = await stack.inspect(id) as ContainerInfo & {
              HostConfig: { LogConfig: unknown; PidsLimit: number };
            };
            assert.deepEqual(info.HostConfig.LogConfig, {
              Type: "json-file",
              Config: { "max-file": "3", "max-size": "10m" },
            }, `${info.Name} rotates its log`);
          }
          const [rabbitmq] = await stack.containers("rabbitmq");
          const broker = await stack.inspect(rabbitmq) as ContainerInfo & {
            HostConfig: { PidsLimit: number };
          };
          assert.equal(broker.HostConfig.PidsLimit, 256);
        });

        await t.step("no password is in the worker image, in any layer", async () => {
          const [worker] = await stack.containers("worker-a");
          const image = (await stack.inspect(worker)).Config.Image;
          const tar = await saved(image);
          tars.push(tar);
          const passwords: string[] = [];
          for await (const entry of Deno.readDir(stack.secretsDir)) {
            if (entry.name.endsWith(".password")) {
              passwords.push(await readSecret(`${stack.secretsDir}/${entry.name}`));
            }
          }
          assert.ok(passwords.length >= 4, `the stack's passwords: ${passwords.length}`);
          // The search sees file contents: the function's own text is there.
          const visible = "Hello from Task A";
          assert.deepEqual(
            await found(tar, [visible, canary, canaryName, ...passwords]),
            [visible],
            "no password, and nothing of secrets/, in the image",
          );
        });

        await t.step(".dockerignore keeps secrets/ out of the build context", async () => {
          // Everything the context holds, copied into an image, as a careless `COPY . .` would.
          const dir = await Deno.makeTempDir({ prefix: "context_probe_" });
          const probe = uniqueName("context_probe");
          try {
            await Deno.writeTextFile(`${dir}/Dockerfile`, "FROM scratch\nCOPY . /context/\n");
            await docker(["build", "-q", "-t", probe, "-f", `${dir}/Dockerfile`, "."], {}, {
              timeoutMs: 300_000,
            });
            const tar = await saved(probe);
            tars.push(tar);
            // What the whitelist lets in is there: the worker's own configuration.
            const allowed = (await Deno.readTextFile(new URL("worker.deno.json", ROOT)))
              .split("\n").reduce((a, b) => (b.trim().length > a.length ? b.trim() : a), "");
            assert.deepEqual(await found(tar, [allowed, canary, canaryName]), [allowed]);
          } finally {
            await docker(["rmi", "-f", probe], {}, true);
            await Deno.remove(dir, { recursive: true });
          }
        });
      } finally {
        await broker?.deleteQueue(secretQueue).catch(() => {});
        await broker?.close();
      }
    } finally {
      await Deno.remove(canaryFile).catch(() => {});
      for (const tar of tars) await Deno.remove(tar).catch(() => {});
      await stack.down();
    }
  },
});
