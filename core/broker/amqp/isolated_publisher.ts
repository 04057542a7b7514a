/**
 * Publishes that the broker's permissions may refuse (events, whose types
 * RabbitMQ's topic permissions check), on a confirm channel of their own:
 * a refusal closes the channel it came on, and must not close the one that
 * carries the connection's consumers. The refusal's reason names the
 * refused routing key: the publishes of that key fail with a
 * {@linkcode PublishForbiddenError}; the others the close caught
 * unconfirmed are sent once more on a new channel (at least once: an
 * event's id lets its receivers drop a copy).
 *
 * @module
 */

import type { ChannelModel, ConfirmChannel, Options } from "amqplib";
import type { Buffer } from "node:buffer";
import { BrokerUnavailableError, PublishForbiddenError, PublishRefusedError } from "../broker.ts";

/** The error amqplib settles a publish with when the broker sent `basic.nack` for it. */
const NACKED = "message nacked";

/** A channel, and what waits on its close. */
interface Isolated {
  channel: Promise<ConfirmChannel>;
  /** Publishes not yet confirmed: each told of the close, with its reason. */
  pending: Set<(reason: unknown) => void>;
}

/** One publish's outcome. */
type Outcome = "ok" | "resend" | Error;

/** See the module documentation. */
export class IsolatedPublisher {
  readonly #connection: ChannelModel;
  readonly #user: string;
  #current: Isolated | undefined;

  /**
   * @param connection Where its channels are opened.
   * @param user The connection's broker user, for messages.
   */
  constructor(connection: ChannelModel, user: string) {
    this.#connection = connection;
    this.#user = user;
  }

  #open(): Isolated {
    if (this.#current) return this.#current;
    const pending = new Set<(reason: unknown) => void>();
    const channel = this.#connection.createConfirmChannel();
    const isolated: Isolated = { channel, pending };
    this.#current = isolated;
    const closed = (reason: unknown) => {
      if (this.#current === isolated) this.#current = undefined;
      for (const tell of [...pending]) tell(reason);
      pending.clear();
    };
    channel.then((opened) => {
      let reason: unknown;
      opened.on("error", (error: unknown) => reason = error);
      opened.on("close", () => closed(reason));
    }).catch(closed);
    return isolated;
  }

  /**
   * Publishes and resolves once the broker confirmed; rejects with a
   * `PublishForbiddenError` for a routing key the permissions refuse, a
   * `PublishRefusedError` for a negative confirm, else a
   * `BrokerUnavailableError`.
   */
  async publish(
    exchange: string,
    routingKey: string,
    body: Buffer,
    options: Options.Publish,
  ): Promise<void> {
    for (let attempt = 1;; attempt++) {
      const outcome = await this.#once(exchange, routingKey, body, options, attempt > 1);
      if (outcome === "ok") return;
      if (outcome !== "resend") throw outcome;
    }
  }

  async #once(
    exchange: string,
    routingKey: string,
    body: Buffer,
    options: Options.Publish,
    resent: boolean,
  ): Promise<Outcome> {
    const action = `publish to exchange '${exchange}' with routing key '${routingKey}'`;
    const isolated = this.#open();
    let channel: ConfirmChannel;
    try {
      channel = await isolated.channel;
    } catch (error) {
      return new BrokerUnavailableError(`Cannot ${action}: ${error}`, { cause: error });
    }
    return await new Promise<Outcome>((resolve) => {
      const onClose = (reason: unknown) =>
        resolve(this.#judge(reason, action, routingKey, exchange, resent));
      isolated.pending.add(onClose);
      try {
        channel.publish(exchange, routingKey, body, options, (error) => {
          // A refusal by permission comes with the channel's close, which says why.
          if (error && (error as Error)?.message !== NACKED) return;
          isolated.pending.delete(onClose);
          resolve(
            error
              ? new PublishRefusedError(
                `Cannot ${action} as the broker refused it (a full queue that refuses more, or no room to store it): make room, or send it elsewhere`,
                exchange,
                { cause: error },
              )
              : "ok",
          );
        });
      } catch (error) {
        isolated.pending.delete(onClose);
        resolve(this.#judge(error, action, routingKey, exchange, resent));
      }
    });
  }

  #judge(
    reason: unknown,
    action: string,
    routingKey: string,
    exchange: string,
    resent: boolean,
  ): Outcome {
    const text = String((reason as Error)?.message ?? "the channel closed");
    const refused = text.match(/ACCESS.REFUSED.*topic '([^']*)'/i);
    if (refused && refused[1] === routingKey) {
      return new PublishForbiddenError(
        `Cannot ${action} as broker user '${this.#user}' may not publish it there (the broker's topic permissions): grant it, for events in functions/registry.yaml (docs/events.md, "Who may emit what")`,
        { exchange, routingKey },
        { cause: reason },
      );
    }
    // Another publish's refusal closed the channel under this one.
    if (refused && !resent) return "resend";
    return new BrokerUnavailableError(
      `Cannot ${action} as the broker did not confirm it: ${text}`,
      {
        cause: reason,
      },
    );
  }
}
