/**
 * The host RabbitMQ's management API, as the user of `AMQP_URL` (the host's
 * guest is an administrator): for tests that make vhosts and users of
 * their own.
 *
 * @module
 */

import { AMQP_URL } from "./_infra.ts";

/** Where the management API answers. */
export const MANAGEMENT_URL = Deno.env.get("RABBITMQ_MANAGEMENT_URL") || "http://127.0.0.1:15672";

/** Calls `method /api/path` with a JSON body; the response's body is already consumed. */
export async function manage(method: string, path: string, body?: unknown): Promise<Response> {
  const url = new URL(AMQP_URL);
  const auth = btoa(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`);
  const response = await fetch(`${MANAGEMENT_URL}/api/${path}`, {
    method,
    headers: { authorization: `Basic ${auth}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  await response.body?.cancel();
  return response;
}

/** Whether the management API answers. */
export async function managementAnswers(): Promise<boolean> {
  try {
    return (await manage("GET", "whoami")).ok;
  } catch {
    return false;
  }
}
