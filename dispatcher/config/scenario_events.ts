/**
 * A scenario's `events:` (docs/configuration.md): events to emit, and the
 * runs each must trigger (which functions, with which outcome, within a
 * timeout). Each expected function must be reachable from the emitted type
 * through the registry's triggers and emits, so a typo in a pattern fails
 * here rather than as a timeout.
 *
 * @module
 */

import { isEventType, MAX_EVENT_HOPS, topicMatches } from "../../core/contract/mod.ts";
import type { FunctionEntry } from "../../core/registry.ts";
import { isObject, show, type YamlChecker, type YamlPath } from "../../core/yaml_checker.ts";

/** A run an emitted event must trigger. */
export interface ExpectedRun {
  function: string;
  /** @default {"success"} */
  status: "success" | "error";
}

/** One event of a scenario. */
export interface EventSpec {
  /** Its type, such as `demo.greet`. */
  type: string;
  /** Its data: each triggered function's payload. */
  data: Record<string, unknown>;
  /** How long to wait for the runs it must trigger. */
  timeoutMs: number;
  /** Binary mode (`ce-` headers) instead of structured. */
  binary: boolean;
  expectRuns: ExpectedRun[];
}

const EVENT_KEYS = ["emit", "data", "timeout_ms", "binary", "expect_runs"];
const RUN_KEYS = ["function", "status"];

/** The functions an event of `type` runs, directly or down a chain of `emits`. */
export function reachedBy(type: string, functions: Iterable<FunctionEntry>): Set<string> {
  const all = [...functions];
  const reached = new Set<string>();
  let types = [type];
  for (let hop = 0; hop < MAX_EVENT_HOPS && types.length > 0; hop++) {
    const next: string[] = [];
    for (const entry of all) {
      if (!entry.triggers?.some((pattern) => types.some((t) => topicMatches(pattern, t)))) continue;
      if (!reached.has(entry.name) && entry.emits) next.push(entry.emits);
      reached.add(entry.name);
    }
    types = next;
  }
  return reached;
}

/** Reads a scenario's `events:`, reporting every problem to `check`. */
export function readScenarioEvents(
  check: YamlChecker,
  value: unknown,
  path: YamlPath,
  known: Map<string, FunctionEntry>,
  defaultTimeoutMs: number,
): EventSpec[] {
  if (!Array.isArray(value) || value.length === 0) {
    check.report(path, `must be a non-empty list of events to emit, but is ${show(value)}`);
    return [];
  }
  const events: EventSpec[] = [];
  value.forEach((entry, index) => {
    const at = [...path, index];
    if (!check.mapping(entry, at, EVENT_KEYS)) return;
    if (!isEventType(entry.emit)) {
      check.report(
        [...at, "emit"],
        `must be an event type, such as demo.greet (words of letters, digits, _ and - separated by dots), but is ${
          show(entry.emit)
        }`,
      );
      return;
    }
    const type = entry.emit;
    let data: Record<string, unknown> = {};
    if (entry.data !== undefined && entry.data !== null) {
      if (!isObject(entry.data)) {
        check.report(
          [...at, "data"],
          `must be a mapping (a JSON object), but is ${show(entry.data)}`,
        );
      } else data = entry.data;
    }
    const timeoutMs = check.number(entry.timeout_ms, [...at, "timeout_ms"], {
      min: 1,
      integer: true,
    }) ?? defaultTimeoutMs;
    let binary = false;
    if (entry.binary !== undefined) {
      if (typeof entry.binary !== "boolean") {
        check.report([...at, "binary"], `must be true or false, but is ${show(entry.binary)}`);
      } else binary = entry.binary;
    }
    const reached = reachedBy(type, known.values());
    const expectRuns: ExpectedRun[] = [];
    const runs = entry.expect_runs;
    if (!Array.isArray(runs) || runs.length === 0) {
      check.report(
        [...at, "expect_runs"],
        `must list the runs the event triggers, such as [{ function: task_a }], but is ${
          show(runs)
        }`,
      );
    } else {
      runs.forEach((run: unknown, i: number) => {
        const runAt = [...at, "expect_runs", i];
        if (!check.mapping(run, runAt, RUN_KEYS)) return;
        const fn = run.function;
        if (typeof fn !== "string" || !known.has(fn)) {
          check.report(
            [...runAt, "function"],
            `${show(fn)} is not a function of the registry: use one of ${
              [...known.keys()].join(", ")
            }`,
          );
          return;
        }
        if (!reached.has(fn)) {
          const triggers = known.get(fn)!.triggers;
          check.report(
            [...runAt, "function"],
            `'${fn}' does not run on '${type}' (its triggers: ${
              triggers?.length ? triggers.join(", ") : "none"
            }), nor down a chain of emits from it: give it a trigger in functions/registry.yaml, or expect another function`,
          );
          return;
        }
        const status = run.status ?? "success";
        if (status !== "success" && status !== "error") {
          check.report([...runAt, "status"], `must be success or error, but is ${show(status)}`);
          return;
        }
        expectRuns.push({ function: fn, status });
      });
    }
    events.push({ type, data, timeoutMs, binary, expectRuns });
  });
  return events;
}
