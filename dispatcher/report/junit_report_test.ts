import assert from "node:assert/strict";
import { findAll, parseXml } from "../../tests/_xml.ts";
import { sampleEvents, sampleRun } from "../../tests/_report_fixtures.ts";
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

Deno.test("renderJunit() writes a testcase per event before the tasks, counted with them as the terminal counts", () => {
  const run = sampleRun(sampleEvents());
  const [suite] = findAll(parseXml(renderJunit(run)), "testsuite");
  // Tasks: 4, one failure, one timeout. Events: 4, two that failed, one never emitted.
  assert.deepEqual(
    [
      suite.attributes.tests,
      suite.attributes.failures,
      suite.attributes.errors,
      suite.attributes.time,
    ],
    ["8", "3", "2", "1.024"],
  );
  const cases = findAll(suite, "testcase");
  assert.deepEqual(cases.slice(0, 4).map((c) => [c.attributes.name, c.attributes.classname]), [
    ["demo.greet#1", "sample.events"],
    ["demo.greet#2", "sample.events"],
    ["demo.other", "sample.events"],
    ["demo.denied", "sample.events"],
  ]);
  assert.equal(cases[0].attributes.time, "0.040");
  const [greet, wrong, silent, denied] = cases;
  assert.equal(findAll(greet, "failure").length + findAll(greet, "error").length, 0);
  const [failure] = findAll(wrong, "failure");
  assert.equal(failure.attributes.type, "UnexpectedRuns");
  assert.equal(failure.attributes.message, "task_b expected to end in error, ended in success");
  const [unreported] = findAll(silent, "failure");
  assert.equal(
    unreported.attributes.message,
    "task_c expected to end in success, not reported within 500 ms",
  );
  const [error] = findAll(denied, "error");
  assert.equal(error.attributes.type, "EmitFailed");
  assert.match(error.attributes.message, /^Cannot emit 'demo\.denied'/);
  const [out] = findAll(greet, "system-out");
  assert.match(out.text, /^event_id: ev-1$/m);
  assert.match(
    out.text,
    /^ran: task_b success on task_b@one in 12 ms \(down the chain, event ev-1-chained\)$/m,
  );
  // Without events, the counts are the tasks' alone.
  const [plain] = findAll(parseXml(renderJunit(sampleRun())), "testsuite");
  assert.deepEqual([plain.attributes.tests, plain.attributes.failures], ["4", "1"]);
});

Deno.test("escapeXml() makes any text safe in content and attributes", () => {
  const nasty = `a<b>&"c"'d'\n\u0001`;
  const root = parseXml(`<x y="${escapeXml(nasty)}">${escapeXml(nasty)}</x>`);
  assert.equal(root.attributes.y, `a<b>&"c"'d'\n\uFFFD`);
  assert.equal(root.text, `a<b>&"c"'d'\n\uFFFD`);
});
