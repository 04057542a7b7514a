/**
 * The limit the product is measured against: an RPC echo written directly
 * on amqplib, with no framework, but the product's delivery guarantees:
 * persistent requests published with confirms, Direct Reply-to, replies
 * published on a confirm channel and requests acknowledged only after their
 * reply is confirmed. This is the one module besides amqp_broker.ts that
 * imports amqplib, because it must not use the product.
 *
 * @module
 */

import amqp from "amqplib";
import type { ConfirmChannel, ConsumeMessage } from "amqplib";
import { Buffer } from "node:buffer";

const SOCKET = { noDelay: true };

/** A running echo server. */
export interface EchoServer {
  close(): Promise<void>;
}

/**
 * Serves `queue`: for each request, waits the body's `work_ms` (if any) and
 * replies with the same body.
 */
export async function startEchoServer(
  url: string,
  queue: string,
  prefetch: number,
  queueType: "classic" | "quorum" = "quorum",
): Promise<EchoServer> {
  const connection = await amqp.connect(url, SOCKET);
  const channel = await connection.createConfirmChannel();
  // The same kind of queue as the product's workers declare by default.
  await channel.assertQueue(queue, {
    durable: true,
    ...(queueType === "quorum" && { arguments: { "x-queue-type": "quorum" } }),
  });
  await channel.prefetch(prefetch);
  await channel.consume(queue, (message: ConsumeMessage | null) => {
    if (!message) return;
    const { work_ms: workMs } = JSON.parse(message.content.toString()).payload ?? {};
    // Fractions of a millisecond: the product's reply times its work to the
    // microsecond (duration_ms), and the limit's must not be rounded where
    // the product's is not.
    const now = () => performance.timeOrigin + performance.now();
    const startedAt = now();
    // A task with work (the seed scenario) answers when it started and
    // finished, as the product's replies do, for the stages of its time; a
    // no-op task (throughput) answers with its request, at no cost.
    const reply = () =>
      channel.publish(
        "",
        message.properties.replyTo,
        workMs > 0
          ? Buffer.from(JSON.stringify({ started_at: startedAt, finished_at: now() }))
          : message.content,
        { correlationId: message.properties.correlationId, contentType: "application/json" },
        (error: unknown) => {
          if (!error) channel.ack(message);
        },
      );
    if (workMs > 0) setTimeout(reply, workMs);
    else reply();
  });
  return {
    async close() {
      await channel.close().catch(() => {});
      await connection.close().catch(() => {});
    },
  };
}

/** One call of the echo, timed as the product's calls are (see `CallOutcome`). */
export interface EchoCall {
  sentAt: number;
  confirmedAt?: number;
  endedAt: number;
  sentWallMs: number;
  endedWallMs: number;
  /** The reply's body. */
  body: Uint8Array;
}

/** A caller of the echo: one connection, Direct Reply-to, confirmed publishes. */
export interface EchoClient {
  /** Sends one request per payload at once; resolves when every reply came back. */
  callAll(queue: string, payloads: Record<string, unknown>[]): Promise<number[]>;
  /** Sends one request and resolves with its timestamps and reply. */
  call(queue: string, payload: Record<string, unknown>): Promise<EchoCall>;
  close(): Promise<void>;
}

/** Opens an {@linkcode EchoClient}. */
export async function openEchoClient(url: string): Promise<EchoClient> {
  const connection = await amqp.connect(url, SOCKET);
  const channel: ConfirmChannel = await connection.createConfirmChannel();
  const pending = new Map<string, (at: number, body: Uint8Array) => void>();
  await channel.consume("amq.rabbitmq.reply-to", (message) => {
    const id = message?.properties.correlationId;
    const done = id === undefined ? undefined : pending.get(id);
    if (!done) return;
    pending.delete(id);
    done(performance.now(), message!.content);
  }, { noAck: true });
  const requestBody = (payload: Record<string, unknown>) =>
    Buffer.from(JSON.stringify({ task: "echo", payload }));
  /** Publishes one request, persistent and confirmed; `onReply` gets its reply. */
  const publishRequest = (
    queue: string,
    body: Buffer,
    onReply: (at: number, body: Uint8Array) => void,
    onConfirm: (error: unknown) => void,
  ) => {
    const id = crypto.randomUUID();
    pending.set(id, onReply);
    channel.publish("", queue, body, {
      correlationId: id,
      replyTo: "amq.rabbitmq.reply-to",
      contentType: "application/json",
      persistent: true,
    }, onConfirm);
  };
  return {
    call(queue, payload) {
      const body = requestBody(payload);
      const sentWallMs = Date.now();
      const sentAt = performance.now();
      let confirmedAt: number | undefined;
      return new Promise<EchoCall>((resolve, reject) => {
        publishRequest(
          queue,
          body,
          (endedAt, reply) =>
            resolve({
              sentAt,
              confirmedAt,
              endedAt,
              sentWallMs,
              endedWallMs: Date.now(),
              body: reply,
            }),
          (error) => {
            if (error) reject(error);
            else confirmedAt ??= performance.now();
          },
        );
      });
    },
    callAll(queue, payloads) {
      return Promise.all(payloads.map((payload) => {
        const body = requestBody(payload);
        const sent = performance.now();
        return new Promise<number>((resolve, reject) => {
          publishRequest(queue, body, (at) => resolve(at - sent), (error) => {
            if (error) reject(error);
          });
        });
      }));
    },
    async close() {
      await channel.close().catch(() => {});
      await connection.close().catch(() => {});
    },
  };
}

if (import.meta.main) {
  // Run as its own process, like a worker: deno run bench/bare_echo.ts URL QUEUE PREFETCH [TYPE]
  const [url, queue, prefetch, queueType] = Deno.args;
  const server = await startEchoServer(
    url,
    queue,
    Number(prefetch),
    queueType === "classic" ? "classic" : "quorum",
  );
  console.log(JSON.stringify({ msg: "Consuming", queue }));
  Deno.addSignalListener("SIGTERM", async () => {
    await server.close();
    Deno.exit(0);
  });
}
