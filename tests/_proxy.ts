/**
 * A TCP proxy with a gate, to make a broker come and go for one process
 * without touching the broker: while closed, it accepts and at once drops
 * every connection; while open, it forwards them; `cut()` drops the ones
 * forwarded and closes the gate.
 *
 * @module
 */

/** A running proxy on 127.0.0.1. */
export interface GatedProxy {
  readonly port: number;
  /** Starts forwarding new connections. */
  open(): void;
  /** Drops every forwarded connection and closes the gate. */
  cut(): void;
  /** Stops listening and drops everything. */
  close(): Promise<void>;
}

/** Starts a proxy to `target`, its gate closed. */
export function startGatedProxy(target: { hostname: string; port: number }): GatedProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const live = new Set<Deno.Conn>();
  let isOpen = false;
  const drop = (connection: Deno.Conn) => {
    live.delete(connection);
    try {
      connection.close();
    } catch {
      // Already closed.
    }
  };
  const forward = async (client: Deno.Conn) => {
    let upstream: Deno.Conn;
    try {
      upstream = await Deno.connect(target);
    } catch {
      drop(client);
      return;
    }
    live.add(client);
    live.add(upstream);
    const pipe = (from: Deno.Conn, to: Deno.Conn) =>
      from.readable.pipeTo(to.writable).catch(() => {}).finally(() => {
        drop(from);
        drop(to);
      });
    await Promise.all([pipe(client, upstream), pipe(upstream, client)]);
  };
  const accepting = (async () => {
    for await (const connection of listener) {
      if (isOpen) forward(connection);
      else drop(connection);
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    open: () => isOpen = true,
    cut() {
      isOpen = false;
      for (const connection of [...live]) drop(connection);
    },
    async close() {
      isOpen = false;
      listener.close();
      for (const connection of [...live]) drop(connection);
      await accepting;
    },
  };
}
