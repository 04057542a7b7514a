/**
 * Decides which broker a run uses: `--local` forces the embedded one; an
 * explicit URL (`--broker`, else `AMQP_URL`) must answer or the run fails;
 * with neither, RabbitMQ on localhost is tried (as the dispatcher of the
 * compose stack when its password exists, see `resolve_broker.ts`) and, when
 * nothing answers there, the embedded broker runs instead, with a notice
 * saying so.
 *
 * @module
 */

import { type Broker, BrokerUnavailableError } from "../functions/_runtime/broker/broker.ts";
import { maskUrl } from "../functions/_runtime/broker/amqp_url.ts";
import type {
  Embedded,
  EmbeddedFunction,
  StartEmbeddedOptions,
} from "../functions/_runtime/embedded.ts";

/** Where RabbitMQ is looked for when no URL is given and no other default applies. */
export const LOCAL_AMQP_URL = "amqp://guest:guest@localhost:5672";

/** A broker chosen for a run. */
export interface BrokerChoice {
  broker: Broker;
  /** Where it is, safe to print (password masked). */
  label: string;
  /** Set when the run uses the in-process broker. */
  embedded?: Embedded;
  /** Why the run fell back to the embedded broker, to print once. */
  notice?: string;
}

/** Options for {@linkcode chooseBroker}. */
export interface ChooseBrokerOptions {
  /** `--local`: use the embedded broker. */
  local: boolean;
  /** `--broker`, else `AMQP_URL`: it must answer. */
  url?: string;
  /**
   * Tried when `url` is not given; when nothing answers there, the embedded
   * broker runs instead.
   * @default {LOCAL_AMQP_URL}
   */
  defaultUrl?: string;
  /** Functions the embedded broker must run. */
  functions: EmbeddedFunction[];
  connect: (url: string, timeoutMs: number) => Promise<Broker>;
  startEmbedded: (
    functions: EmbeddedFunction[],
    options?: StartEmbeddedOptions,
  ) => Promise<Embedded>;
  embeddedOptions?: StartEmbeddedOptions;
  /**
   * How long an explicit broker has to answer.
   * @default {5000}
   */
  timeoutMs?: number;
  /**
   * How long RabbitMQ on localhost has to answer before the fallback.
   * @default {1500}
   */
  probeTimeoutMs?: number;
}

const EMBEDDED_LABEL = "embedded (in-process broker, each function in its own Web Worker)";

async function embed(options: ChooseBrokerOptions, notice?: string): Promise<BrokerChoice> {
  const embedded = await options.startEmbedded(options.functions, options.embeddedOptions);
  return { broker: embedded.connect(), label: EMBEDDED_LABEL, embedded, notice };
}

/** Picks and connects the broker for a run; see the module documentation. */
export async function chooseBroker(options: ChooseBrokerOptions): Promise<BrokerChoice> {
  if (options.local) return await embed(options);
  if (options.url !== undefined) {
    const broker = await options.connect(options.url, options.timeoutMs ?? 5000);
    return { broker, label: maskUrl(options.url) };
  }
  const defaultUrl = options.defaultUrl ?? LOCAL_AMQP_URL;
  try {
    const broker = await options.connect(defaultUrl, options.probeTimeoutMs ?? 1500);
    return { broker, label: maskUrl(defaultUrl) };
  } catch (error) {
    if (!(error instanceof BrokerUnavailableError) || !error.unreachable) throw error;
    return await embed(
      options,
      `No broker answered at ${
        maskUrl(defaultUrl)
      }, so this run uses the embedded broker. To run distributed: 'docker compose up -d --build', then run this again (or pass --broker URL).`,
    );
  }
}
