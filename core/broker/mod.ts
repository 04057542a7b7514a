/**
 * The broker seam: everything outside `core/broker/` reaches a broker
 * through these names.
 *
 * - `broker.ts`: the `Broker` port every backend implements, its errors, and
 *   what a connector is given;
 * - `target.ts`: the one resolver of a caller's settings (flags or options,
 *   `AMQP_*` variables, the compose stack's password), `resolveBrokerTarget`;
 * - `connect.ts`: `connect(target)`, which picks the backend by the URL's
 *   scheme (`amqp:`/`amqps:` in `amqp/`, `memory:` in `memory/`);
 * - `reconnecting.ts`: a `Broker` that connects again after losing its node;
 * - `secret_file.ts`, `url.ts`: password and certificate files, URLs as text.
 *
 * @module
 */

export * from "./broker.ts";
export { connect, type ConnectOptions, type ConnectTarget } from "./connect.ts";
export {
  BROKER_ENV_VARS,
  type BrokerSettingNames,
  type BrokerSettings,
  type BrokerTarget,
  DEFAULT_BROKER_URL,
  resolveBrokerTarget,
  type ResolveBrokerTargetOptions,
} from "./target.ts";
export {
  type ConnectionEvent,
  describeConnectionEvent,
  ReconnectingBroker,
  type ReconnectingBrokerOptions,
} from "./reconnecting.ts";
export { SecretFileError } from "./secret_file.ts";
export { maskUrl } from "./url.ts";
export { MemoryBroker } from "./memory/memory_broker.ts";
/** The arguments RabbitMQ is given for a queue: the Kubernetes manifests declare the same. */
export { queueArguments } from "./amqp/queue_arguments.ts";
