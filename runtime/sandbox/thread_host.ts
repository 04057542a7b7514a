/**
 * Loading a function into a new sandbox: a Web Worker that Deno starts with
 * no permissions, whose main module imports the sandbox's inside
 * (`sandbox_host.ts`) first and the function's module second, and the wait
 * for it to say which function it holds. `sandbox.ts` runs tasks in it,
 * through a {@linkcode SandboxHost}: this one in this process, or the one
 * of `sandbox_process.ts` in a process of its own.
 *
 * @module
 */

import { boundText, MAX_ERROR_MESSAGE_CHARS } from "../../core/contract/message.ts";
import { checkFunctionInfo, type FunctionInfo, type RetryPolicy } from "../define_function.ts";
import { batcher, type FromSandbox, type ToSandbox } from "./host.ts";

/** The sandbox cannot be made: Deno was started without what it needs, or the module fails. */
export class SandboxError extends Error {
  /** @param message What failed and how to fix it. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SandboxError";
  }
}

const hostModule = new URL("./serve_function.ts", import.meta.url);

function mainModuleOf(module: URL): string {
  const source = `import { hostFunction } from ${JSON.stringify(hostModule.href)};\n` +
    `import * as fn from ${JSON.stringify(module.href)};\n` +
    `hostFunction(fn.default);\n`;
  return URL.createObjectURL(new Blob([source], { type: "application/javascript" }));
}

/**
 * Where a function's sandbox runs, as `sandbox.ts` drives it; replaced when
 * it gets stuck or fails.
 */
export interface SandboxHost {
  /** Queues a message for the sandbox; messages of one turn go together. */
  readonly send: (message: ToSandbox) => void;
  /** Each message of the sandbox, unchecked: the receiver checks it. */
  onMessage: (message: FromSandbox) => void;
  /** The sandbox ended or cannot go on; `message` says why. */
  onFailure: (message: string) => void;
  /** Ends the sandbox at once, whatever it is doing; resolves once it has ended. */
  terminate(): Promise<void>;
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

/**
 * Resolves with what the function in `host` says of itself, checked, once
 * its module has loaded; rejects with a {@linkcode SandboxError} when it
 * fails to load or takes longer than `timeoutMs`. What else the sandbox
 * sends meanwhile (what its module's top-level code prints) goes to `other`.
 */
export function waitReady(
  host: SandboxHost,
  module: URL,
  timeoutMs: number,
  other: (message: FromSandbox) => void = () => {},
): Promise<FunctionInfo> {
  return new Promise((resolve, reject) => {
    const where = module.protocol === "file:" ? module.pathname : module.href;
    const timer = setTimeout(() => {
      reject(
        new SandboxError(
          `Cannot load the function from ${where} as it did not finish loading within ${timeoutMs} ms: check its top-level code`,
        ),
      );
    }, timeoutMs);
    const fail = (message: string) => {
      clearTimeout(timer);
      reject(
        new SandboxError(
          `Cannot load the function from ${where}: ${boundText(message, MAX_ERROR_MESSAGE_CHARS)}`,
        ),
      );
    };
    host.onFailure = fail;
    host.onMessage = (message) => {
      // Before it is ready, an error the sandbox reports is its module's.
      if (message.k === "failed" || message.k === "stray") return fail(String(message.message));
      if (message.k !== "ready") return other(message);
      clearTimeout(timer);
      try {
        const info = message.info as unknown as FunctionInfo;
        resolve(checkFunctionInfo({ ...info, retry: info.retry as RetryPolicy }));
      } catch (error) {
        fail((error as Error).message);
      }
    };
  });
}
