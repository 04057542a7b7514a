import assert from "node:assert/strict";
import { findAll, parseXml } from "../../tests/_xml.ts";
import { sampleRun } from "../../tests/_report_fixtures.ts";
import { escapeXml, renderJunit } from "./junit_report.ts";

Deno.test("renderJunit() writes a testsuite for the scenario and a testcase per task", () => {
  const run = sampleRun();
  const root = parseXml(renderJunit(run));
  assert.equal(root.name, "testsuites");
  assert.equal(root.attributes.name, "Fixture config");
  const suites = findAll(root, "testsuite");
  assert.equal(suites.length, 1);
  const [suite] = suites;
  assert.deepEqual(
    [
      suite.attributes.name,
      suite.attributes.tests,
      suite.attributes.failures,
      suite.attributes.errors,
    ],
    ["sample", "4", "1", "1"],
  );
  assert.equal(suite.attributes.time, "0.903");
  assert.equal(suite.attributes.timestamp, run.started_at);
  const properties = Object.fromEntries(
    findAll(suite, "property").map((p) => [p.attributes.name, p.attributes.value]),
  );
  assert.equal(properties.broker, "amqp://guest:***@localhost:5672");

  const cases = findAll(suite, "testcase");
  assert.deepEqual(cases.map((c) => c.attributes.name), [
    "task_a#1",
    "task_b",
    "task_a#2",
    "task_c",
  ]);
  assert.deepEqual(cases.map((c) => c.attributes.classname), [
    "sample.task_a",
    "sample.task_b",
    "sample.task_a",
    "sample.task_c",
  ]);
  assert.equal(cases[0].attributes.time, "0.112");
  // Passing tasks have neither failure nor error.
  for (const passing of cases.slice(0, 2)) {
    assert.equal(findAll(passing, "failure").length + findAll(passing, "error").length, 0);
  }
  const [failure] = findAll(cases[2], "failure");
  assert.equal(failure.attributes.type, "Boom");
  assert.equal(failure.attributes.message, 'expected success, got Boom: it <broke> & "failed"');
  assert.match(failure.text, /^Boom: it <broke> & "failed"$/m);
  const [timeout] = findAll(cases[3], "error");
  assert.equal(timeout.attributes.type, "Timeout");
  assert.match(timeout.text, /No reply within 900 ms; last seen on task_c@one, attempt 1/);
  const [out] = findAll(cases[1], "system-out");
  assert.match(out.text, /^task_id: id-task_b$/m);
  assert.match(out.text, /^attempts: 3$/m);
  assert.match(out.text, /^worker: task_b@one$/m);
});

Deno.test("escapeXml() makes any text safe in content and attributes", () => {
  const nasty = `a<b>&"c"'d'\n\u0001`;
  const root = parseXml(`<x y="${escapeXml(nasty)}">${escapeXml(nasty)}</x>`);
  assert.equal(root.attributes.y, `a<b>&"c"'d'\n\uFFFD`);
  assert.equal(root.text, `a<b>&"c"'d'\n\uFFFD`);
});
