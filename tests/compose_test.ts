/**
 * compose.yaml keeps the promises the docs make: workers scale, drain
 * before Docker kills them, and run locked down; only loopback is exposed.
 */

import assert from "node:assert/strict";
import { parse } from "yaml";
import { loadRegistry } from "../core/registry.ts";

type Service = Record<string, unknown> & {
  build?: { dockerfile?: string; args?: Record<string, string> };
  environment?: Record<string, string>;
};

// Compose applies YAML merge keys (`<<: *worker`), so parse with them.
const compose = parse(await Deno.readTextFile(new URL("../compose.yaml", import.meta.url)), {
  merge: true,
}) as {
  services: Record<string, Service>;
};
const workers = Object.entries(compose.services).filter(([, service]) =>
  service.build?.dockerfile === "Dockerfile.worker"
);

function seconds(duration: unknown): number {
  const match = String(duration).match(/^(\d+(?:\.\d+)?)(ms|s|m)$/);
  assert.ok(match, `a duration: ${duration}`);
  const value = Number(match[1]);
  return match[2] === "ms" ? value / 1000 : match[2] === "m" ? value * 60 : value;
}

Deno.test("compose.yaml runs one worker service per Deno function of the registry", async () => {
  const registry = await loadRegistry(
    decodeURIComponent(new URL("../functions/registry.yaml", import.meta.url).pathname),
  );
  const functions = workers.map(([, service]) => service.build?.args?.FUNCTION).sort();
  const native = [...registry.functions.values()].filter((f) => f.protocol === "native");
  assert.deepEqual(functions, native.map(({ name }) => name).sort());
  assert.ok(functions.length >= 2);
});

Deno.test("compose.yaml workers can be scaled: no fixed names or host ports", () => {
  for (const [name, service] of workers) {
    assert.equal(service.container_name, undefined, `${name} has a fixed container name`);
    assert.equal(service.ports, undefined, `${name} publishes host ports`);
  }
});

Deno.test("compose.yaml gives workers longer to stop than their grace period", () => {
  for (const [name, service] of workers) {
    const graceMs = Number(service.environment?.SHUTDOWN_GRACE_MS ?? 10_000);
    const stop = seconds(service.stop_grace_period ?? "10s");
    assert.ok(
      stop * 1000 >= graceMs + 2000,
      `${name}: stop_grace_period ${stop}s, grace ${graceMs}ms`,
    );
  }
});

Deno.test("compose.yaml locks workers down and waits for a healthy broker", () => {
  for (const [name, service] of workers) {
    assert.equal(service.read_only, true, `${name} read_only`);
    assert.deepEqual(service.cap_drop, ["ALL"], `${name} cap_drop`);
    assert.ok(
      (service.security_opt as string[]).some((o) => o.startsWith("no-new-privileges")),
      `${name} no-new-privileges`,
    );
    assert.ok(service.restart, `${name} has a restart policy`);
    const dependsOn = service.depends_on as Record<string, { condition: string }>;
    assert.equal(dependsOn.rabbitmq.condition, "service_healthy", `${name} waits for the broker`);
  }
});

Deno.test("compose.yaml publishes the broker on loopback only, with a health check", () => {
  const rabbitmq = compose.services.rabbitmq;
  assert.ok(rabbitmq.healthcheck, "rabbitmq has a health check");
  for (const port of rabbitmq.ports as string[]) {
    // Loopback unless the operator sets PUBLISH_ADDRESS on purpose.
    assert.match(port, /^\$\{PUBLISH_ADDRESS:-127\.0\.0\.1\}:/, `published on loopback: ${port}`);
  }
  assert.ok((rabbitmq.ports as string[]).some((p) => p.includes("${AMQP_PORT:-5672}:5672")));
});

Deno.test("secrets-init runs with only what compose mounts for it: every module it imports is there", async () => {
  const service = compose.services["secrets-init"] as Service & {
    volumes: string[];
    command: string[];
  };
  const root = new URL("..", import.meta.url);
  const app = await Deno.makeTempDir({ prefix: "secrets-init-" });
  try {
    // The host folders mounted under /app, and nothing else, as in its container.
    for (const volume of service.volumes) {
      const [host, inside] = volume.split(":");
      if (!inside.startsWith("/app/")) continue;
      const target = `${app}/${inside.slice("/app/".length)}`;
      await Deno.mkdir(target, { recursive: true });
      for await (const entry of Deno.readDir(new URL(host, root))) {
        if (entry.isFile) {
          await Deno.copyFile(new URL(`${host}/${entry.name}`, root), `${target}/${entry.name}`);
        }
      }
    }
    const secrets = `${app}/secrets`;
    await Deno.mkdir(secrets);
    const args = service.command
      .filter((arg) => arg.startsWith("--function=") || arg.startsWith("--celery-"));
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        "--no-lock",
        `--allow-read=${app}`,
        `--allow-write=${secrets}`,
        `${app}/ops/rabbitmq/secrets_init.ts`,
        `--dir=${secrets}`,
        ...args,
      ],
      cwd: app,
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(120_000),
    }).output();
    const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 0, text);
    assert.ok((await Deno.stat(`${secrets}/definitions.json`)).size > 0);
  } finally {
    await Deno.remove(app, { recursive: true });
  }
});
