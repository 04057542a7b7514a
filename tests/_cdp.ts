/**
 * Headless Chromium driven over the DevTools protocol (a WebSocket), for
 * tests of live pages: open a page, wait for what it renders, click, and
 * take screenshots, while the page keeps its connections open (which
 * `--dump-dom` and `--screenshot` cannot wait for).
 *
 * @module
 */

import { CHROMIUM } from "./_infra.ts";
import { waitFor } from "./_helpers.ts";

/** A page in the browser. */
export interface CdpPage {
  /** Loads `url` and resolves once its load event fired. */
  goto(url: string): Promise<void>;
  /** The value of a JavaScript expression in the page (awaited when a promise). */
  evaluate<T>(expression: string): Promise<T>;
  /** Waits until `expression` is truthy in the page. */
  waitFor(expression: string, what: string, timeoutMs?: number): Promise<void>;
  /** A PNG of the viewport. */
  screenshot(): Promise<Uint8Array>;
}

/** A running browser. */
export interface Browser {
  /** A new tab of `width` x `height`. */
  newPage(width?: number, height?: number): Promise<CdpPage>;
  close(): Promise<void>;
}

interface Pending {
  resolve: (value: Record<string, unknown>) => void;
  reject: (error: Error) => void;
}

/** Starts headless Chromium with a profile of its own in `dir`. */
export async function launchBrowser(dir: string): Promise<Browser> {
  const profile = `${dir}/chromium-profile`;
  const child = new Deno.Command(CHROMIUM!, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--hide-scrollbars",
      "--force-device-scale-factor=1",
      "--remote-debugging-port=0",
      `--user-data-dir=${profile}`,
      "about:blank",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  let endpoint = "";
  try {
    await waitFor(
      async () => {
        try {
          const [port, path] = (await Deno.readTextFile(`${profile}/DevToolsActivePort`)).split(
            "\n",
          );
          endpoint = `ws://127.0.0.1:${port}${path}`;
          return Boolean(port && path);
        } catch {
          return false;
        }
      },
      "Chromium's DevTools port",
      30_000,
      50,
    );
  } catch (error) {
    child.kill("SIGKILL");
    await child.status;
    throw error;
  }
  const socket = new WebSocket(endpoint);
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error(`Cannot open ${endpoint}`));
  });
  let nextId = 1;
  const pending = new Map<number, Pending>();
  const listeners = new Set<(message: Record<string, unknown>) => void>();
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (typeof message.id === "number") {
      const call = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) call?.reject(new Error(JSON.stringify(message.error)));
      else call?.resolve(message.result);
      return;
    }
    for (const listener of listeners) listener(message);
  };
  const send = (method: string, params: unknown = {}, sessionId?: string) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const id = nextId++;
      pending.set(id, { resolve, reject });
      socket.send(JSON.stringify({ id, method, params, sessionId }));
    });

  return {
    async newPage(width = 1400, height = 1000) {
      const { targetId } = await send("Target.createTarget", { url: "about:blank" });
      const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true }) as {
        sessionId: string;
      };
      const call = (method: string, params: unknown = {}) => send(method, params, sessionId);
      await call("Page.enable");
      await call("Runtime.enable");
      await call("Emulation.setDeviceMetricsOverride", {
        width,
        height,
        deviceScaleFactor: 1,
        mobile: false,
      });
      const evaluate = async <T>(expression: string): Promise<T> => {
        const result = await call("Runtime.evaluate", {
          expression,
          returnByValue: true,
          awaitPromise: true,
        }) as { result: { value: T }; exceptionDetails?: unknown };
        if (result.exceptionDetails) {
          throw new Error(`${expression}: ${JSON.stringify(result.exceptionDetails)}`);
        }
        return result.result.value;
      };
      return {
        async goto(url) {
          const loaded = new Promise<void>((resolve) => {
            const listener = (message: Record<string, unknown>) => {
              if (message.sessionId === sessionId && message.method === "Page.loadEventFired") {
                listeners.delete(listener);
                resolve();
              }
            };
            listeners.add(listener);
          });
          await call("Page.navigate", { url });
          await loaded;
        },
        evaluate,
        async waitFor(expression, what, timeoutMs = 20_000) {
          await waitFor(async () => Boolean(await evaluate(expression)), what, timeoutMs, 50);
        },
        async screenshot() {
          const { data } = await call("Page.captureScreenshot", { format: "png" }) as {
            data: string;
          };
          return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
        },
      };
    },
    async close() {
      for (const call of pending.values()) call.reject(new Error("The browser closed"));
      await new Promise((resolve) => {
        socket.onclose = resolve;
        socket.close();
      });
      child.kill("SIGTERM");
      await child.status;
    },
  };
}
