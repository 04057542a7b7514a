import assert from "node:assert/strict";
import { parsePrometheus } from "./_prometheus.ts";

Deno.test("parsePrometheus() reads samples of declared families, histograms included", () => {
  const exposition = parsePrometheus(
    [
      "# HELP jobs_total Jobs.",
      "# TYPE jobs_total counter",
      'jobs_total{kind="a\\"b",queue="q"} 3',
      "# TYPE wait_seconds histogram",
      'wait_seconds_bucket{le="+Inf"} 2',
      "wait_seconds_sum 0.5",
      "wait_seconds_count 2",
      "",
    ].join("\n"),
  );
  assert.equal(exposition.value("jobs_total", { kind: 'a"b' }), 3);
  assert.equal(exposition.value("wait_seconds_count"), 2);
  assert.equal(exposition.types.get("wait_seconds"), "histogram");
  assert.throws(() => exposition.value("jobs_total", { kind: "other" }), /found 0/);
});

Deno.test("parsePrometheus() refuses malformed text", () => {
  for (
    const text of [
      "jobs_total 1\n", // no TYPE
      "# TYPE jobs_total counter\njobs_total one\n",
      '# TYPE jobs_total counter\njobs_total{kind="a} 1\n',
      "# TYPE jobs_total counter\njobs_total{kind=a} 1\n",
      "# TYPE jobs_total counter\njobs_total 1", // no final newline
      "# TYPE jobs_total countr\n",
      "# TYPE jobs_total counter\n# TYPE jobs_total counter\n",
    ]
  ) {
    assert.throws(() => parsePrometheus(text), SyntaxError, JSON.stringify(text));
  }
});
