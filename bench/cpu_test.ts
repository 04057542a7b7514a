import assert from "node:assert/strict";
import { cpuBetween, cpuMarks, cpuMsOf, type CpuSnapshot, listenerPid, treeCpuMs } from "./cpu.ts";

Deno.test("cpuMsOf() reads a process's CPU time from /proc, and nothing of one that is gone", () => {
  const until = performance.now() + 50;
  while (performance.now() < until) {
    // Some CPU time of this process's own.
  }
  const own = cpuMsOf(Deno.pid);
  assert.ok(own !== undefined && own > 0, String(own));
  assert.ok(treeCpuMs(Deno.pid)! >= own);
  assert.equal(cpuMsOf(2 ** 22 + 1), undefined);
});

Deno.test("listenerPid() finds the process listening on a port of this machine", () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    assert.equal(listenerPid((listener.addr as Deno.NetAddr).port), Deno.pid);
  } finally {
    listener.close();
  }
});

Deno.test("cpuMarks() counts the CPU time per task between a client's begin and end marks", () => {
  const snapshots: CpuSnapshot[] = [
    { client: 1000, server: 5000, broker: null },
    { client: 1500, server: 6000, broker: null },
  ];
  const marks = cpuMarks(() => snapshots.shift()!);
  marks.onLine("bullmq 10000 tasks: 4000 tasks/s");
  assert.equal(marks.perTask(), undefined, "no marks yet");
  marks.onLine("cpu-mark begin");
  marks.onLine("cpu-mark end 10000");
  // 500 ms and 1000 ms over 10,000 tasks.
  assert.deepEqual(marks.perTask(), { client: 50, server: 100, broker: null, total: 150 });
  assert.deepEqual(
    cpuBetween({ client: 1, server: null, broker: 2 }, {
      client: 4,
      server: 3,
      broker: 2,
    }),
    { client: 3, server: null, broker: 0 },
  );
});
