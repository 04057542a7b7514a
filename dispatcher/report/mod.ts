/**
 * What a dispatch run leaves behind, as one concept behind this face: its
 * document (`run_document.ts`, the JSON every other report is made from),
 * the summary people read (`summary.ts`), JUnit XML (`junit_report.ts`) and
 * the HTML report with its timeline (`html_report.ts`, `html_timeline.ts`).
 *
 * @module
 */

export {
  buildRunDocument,
  documentLines,
  type EventRecord,
  type ExpectedRunRecord,
  type RunDocument,
  runDocumentOf,
  type TaskRecord,
  taskRecord,
} from "./run_document.ts";
export { abandonedNote, clockTime, summaryLines } from "./summary.ts";
export { junitLines } from "./junit_report.ts";
export { htmlReportParts } from "./html_report.ts";
