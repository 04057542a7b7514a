/**
 * A function's sandbox in this process: a Web Worker that Deno starts with
 * no permissions, whose main module imports the sandbox's inside
 * (`serve_function.ts`) first and the function's module second.
 * `sandbox.ts` runs tasks in it through its {@linkcode SandboxHost}; a
 * sandbox in a process of its own (`process_host.ts`) runs one of these
 * there (`relay.ts`).
 *
 * @module
 */

import {
  batcher,
  type FromSandbox,
  SandboxError,
  type SandboxHost,
  type ToSandbox,
} from "./host.ts";

const inside = new URL("./serve_function.ts", import.meta.url);

function mainModuleOf(module: URL): string {
  const source = `import { serveFunction } from ${JSON.stringify(inside.href)};\n` +
    `import * as fn from ${JSON.stringify(module.href)};\n` +
    `serveFunction(fn.default);\n`;
  return URL.createObjectURL(new Blob([source], { type: "application/javascript" }));
}

/** One Web Worker in this process running the function. */
export class ThreadHost implements SandboxHost {
  readonly worker: Worker;
  readonly send: (message: ToSandbox) => void;
  onMessage: (message: FromSandbox) => void = () => {};
  onFailure: (message: string) => void = () => {};

  constructor(module: URL, name: string) {
    const url = mainModuleOf(module);
    try {
      this.worker = new Worker(url, {
        type: "module",
        name,
        deno: { permissions: "none" },
      } as WorkerOptions);
    } catch (error) {
      // Without --unstable-worker-options Deno does not get here: it exits
      // with a message naming the flag, so nothing runs unsandboxed.
      throw new SandboxError(`Cannot start the function's sandbox: ${(error as Error).message}`, {
        cause: error,
      });
    } finally {
      URL.revokeObjectURL(url);
    }
    this.send = batcher<ToSandbox>((batch) => this.worker.postMessage(batch));
    this.worker.addEventListener("message", (event: MessageEvent) => {
      const batch = event.data;
      if (!Array.isArray(batch)) return;
      for (const message of batch) {
        if (typeof message === "object" && message !== null) this.onMessage(message);
      }
    });
    this.worker.addEventListener("error", (event) => {
      event.preventDefault();
      this.onFailure(String(event.message));
    });
  }

  terminate(): Promise<void> {
    this.worker.terminate();
    return Promise.resolve();
  }
}
