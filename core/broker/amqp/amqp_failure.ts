/**
 * What an amqplib failure means for the caller, as the error the
 * Broker interface promises: a queue declared with other
 * arguments, a missing queue or exchange, a refused access, a lost
 * connection. Passwords in the broker's text are redacted.
 *
 * @module
 */

import { BrokerUnavailableError, QueueMismatchError } from "../broker.ts";
import { maskUrl, redactPassword } from "../url.ts";

/** What a NOT_FOUND error names, such as "exchange 'tasks.control'". */
function notFound(text: string): string {
  const match = text.match(/no (queue|exchange) '([^']*)'/i);
  return match ? `${match[1].toLowerCase()} '${match[2]}'` : "it";
}

/** The error for `action` on the connection to `url` once it is gone. */
export function closedError(action: string, url: string, cause?: unknown): BrokerUnavailableError {
  return new BrokerUnavailableError(
    `Cannot ${action} as the connection to ${maskUrl(url)} is closed`,
    cause === undefined ? undefined : { cause },
  );
}

/**
 * The error for `action` failing with `error` on the connection to `url`
 * (`closed` once that connection is gone).
 */
export function describeAmqpFailure(
  action: string,
  error: unknown,
  url: string,
  closed: boolean,
): Error {
  const text = redactPassword(error instanceof Error ? error.message : String(error), url);
  const mismatch = text.match(
    /inequivalent arg '([^']+)' for queue '([^']+)'[^:]*: received (.+?) but current is (.+?)"?$/i,
  );
  if (mismatch) {
    const [, argument, queue, received, present] = mismatch;
    const value = (words: string) => {
      const quoted = words.match(/'([^']*)'/)?.[1];
      return quoted === undefined ? "none" : `'${quoted}'`;
    };
    const wanted = value(received);
    const current = value(present);
    return new QueueMismatchError(
      `Cannot ${action} as it exists with ${argument} ${current} and this declaration asks for ${wanted}: declare it as it is, or migrate it (docs/operations.md, "Changing a queue's type or limits")`,
      { queue, argument, wanted, current },
      { cause: error },
    );
  }
  if (/PRECONDITION.FAILED.*inequivalent/i.test(text)) {
    return new TypeError(
      `Cannot ${action} as it exists with other settings (${text}): delete it or declare it with its settings`,
      { cause: error },
    );
  }
  if (/RESOURCE.LOCKED/i.test(text)) {
    return new TypeError(
      `Cannot ${action} as another connection holds it exclusively (${text}): use a queue of your own`,
      { cause: error },
    );
  }
  if (/NOT.FOUND/i.test(text)) {
    return new TypeError(
      `Cannot ${action} as ${notFound(text)} does not exist: declare it first`,
      { cause: error },
    );
  }
  if (/ACCESS.REFUSED/i.test(text)) {
    return new BrokerUnavailableError(
      `Cannot ${action} as the broker refused access: ${text}: grant the user permissions on it`,
      { cause: error },
    );
  }
  if (closed) return closedError(action, url, error);
  return new BrokerUnavailableError(`Cannot ${action}: ${text}`, { cause: error });
}
