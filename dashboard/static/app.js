// The dashboard page: renders what the server pushes over server-sent
// events. Everything shown comes from the broker (task ids, error messages,
// dead letters' bodies: text a hostile caller or function wrote), so it is
// only ever set as text (textContent, text nodes), never parsed as HTML.
"use strict";

const MAX_ROWS = 200;
const KIND_NAMES = {
  "task-sent": "sent",
  "task-started": "started",
  "task-retried": "retried",
  "task-succeeded": "succeeded",
  "task-failed": "failed",
  "task-rejected": "rejected",
};

let state = null;
let eventsShown = 0;

/** An element with properties and children; strings become text nodes. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, String(value));
    else node[key] = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(text(child)));
  }
  return node;
}

function text(value) {
  return value === null || value === undefined ? "" : String(value);
}

function num(value, unit = "") {
  return value === null || value === undefined ? "–" : `${value}${unit}`;
}

function ms(value) {
  if (value === null || value === undefined) return "–";
  return value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`;
}

function uptime(msValue) {
  const s = Math.floor(msValue / 1000);
  const [h, m] = [Math.floor(s / 3600), Math.floor(s / 60) % 60];
  return h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${s % 60}s` : `${s}s`;
}

function clock(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return text(iso);
  return date.toLocaleTimeString(undefined, { hour12: false }) +
    `.${String(date.getMilliseconds()).padStart(3, "0")}`;
}

function replaceRows(tbody, rows, columns, emptyText) {
  tbody.replaceChildren(
    ...(rows.length > 0
      ? rows
      : [el("tr", {}, el("td", { class: "empty", colSpan: columns }, emptyText))]),
  );
}

/** Finished tasks per 10 s over five minutes, failures in red on top. */
function sparkline(series, failed) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const width = 150;
  const height = 28;
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const max = Math.max(1, ...series);
  const bar = width / series.length;
  series.forEach((count, i) => {
    for (const [value, cls] of [[count, ""], [failed[i], "failed"]]) {
      if (value <= 0) continue;
      const rect = document.createElementNS(ns, "rect");
      const h = Math.max(1, (value / max) * height);
      rect.setAttribute("x", String(i * bar));
      rect.setAttribute("y", String(height - h));
      rect.setAttribute("width", String(Math.max(1, bar - 1)));
      rect.setAttribute("height", String(h));
      if (cls) rect.setAttribute("class", cls);
      svg.append(rect);
    }
  });
  const title = document.createElementNS(ns, "title");
  title.textContent = `finished per 10 s: ${series.join(" ")}`;
  svg.append(title);
  return svg;
}

function renderFunctions(functions, live) {
  const rows = functions.map((f) => {
    const fig = f.figures;
    return el(
      "tr",
      { "data-function": f.function },
      el(
        "td",
        {},
        f.function,
        ...(f.triggers?.length
          ? [el("div", { class: "triggers mono" }, `on ${f.triggers.join(", ")}`)]
          : []),
        ...(f.schedule ? [el("div", { class: "muted schedule" }, `on ${f.schedule}`)] : []),
      ),
      el("td", { class: "mono" }, f.exists || !live ? f.queue : `${f.queue} (not declared yet)`),
      el("td", { class: "num depth" }, num(f.messages)),
      el("td", { class: "num consumers" }, num(f.consumers)),
      el("td", { class: "num" }, f.workers),
      el("td", { class: `num dlq${f.deadLetters ? " bad" : ""}` }, num(f.deadLetters)),
      el("td", { class: "num" }, fig.perSecond),
      el(
        "td",
        { class: "num" },
        `${fig.succeeded} ok, ${fig.failed} failed (${fig.cancelled} cancelled), ${fig.retried} retried`,
      ),
      el("td", { class: "num" }, `${ms(fig.runP50)} / ${ms(fig.runP95)}`),
      el("td", { class: "num" }, ms(fig.endToEndP95)),
      el("td", {}, sparkline(fig.series, fig.failedSeries)),
    );
  });
  replaceRows(document.querySelector("#functions tbody"), rows, 11, "No functions configured");
}

function renderScheduler(scheduler, functions) {
  const node = document.getElementById("scheduler");
  const scheduled = functions.some((f) => f.schedule);
  node.hidden = !scheduler && !scheduled;
  node.textContent = scheduler
    ? `Scheduler: ${scheduler.scheduler} fires the ticks, since ${
      clock(scheduler.since)
    } (last heard ${clock(scheduler.seen)})`
    : "Scheduler: no replica has said it fires yet: start deno task scheduler";
}

function renderWorkers(workers) {
  const rows = workers.map((w) =>
    el(
      "tr",
      { "data-worker": w.worker },
      el("td", { class: "mono" }, w.worker),
      el("td", {}, w.function),
      el("td", { class: "num" }, uptime(w.uptime_ms)),
      el("td", { class: "num" }, w.tasks_done),
      el("td", { class: "num" }, w.in_flight),
      el("td", { class: "num" }, w.succeeded),
      el("td", { class: "num" }, w.failed),
      el("td", { class: "num" }, w.retried),
      el("td", {}, w.events === true ? "on" : w.events === false ? "off" : "?"),
    )
  );
  document.getElementById("worker-count").textContent = `(${workers.length} live)`;
  replaceRows(document.querySelector("#workers tbody"), rows, 9, "No worker answered the ping");
}

function detailOf(event) {
  const parts = [];
  if (event.reason) parts.push(event.reason);
  if (event.error_type) parts.push(event.error_type);
  if (event.error) parts.push(event.error);
  if (event.delay_ms !== undefined) parts.push(`next try in ${ms(event.delay_ms)}`);
  if (event.kind === "task-sent" && event.sender) parts.push(`by ${event.sender}`);
  return parts.join(": ");
}

/** A long id cut to its start, whole in the tooltip. */
function shortId(id, keep = 13) {
  const value = text(id);
  return value.length > keep + 1 ? el("span", { title: value }, `${value.slice(0, keep)}…`) : value;
}

function timeOf(event) {
  const at = Date.parse(event.at);
  return Number.isFinite(at) ? at : Date.now();
}

function eventRow(event) {
  return el(
    "tr",
    {
      class: `kind-${text(event.kind)}`,
      "data-kind": event.kind,
      "data-task-id": text(event.task_id),
      "data-at": timeOf(event),
    },
    el("td", { class: "mono nowrap" }, clock(event.at)),
    el("td", { class: "kind" }, KIND_NAMES[event.kind] ?? event.kind),
    el("td", {}, event.function),
    el("td", { class: "mono nowrap" }, event.task_id ? shortId(event.task_id) : "(no id)"),
    el("td", { class: "num" }, num(event.attempt)),
    el("td", { class: "mono nowrap" }, event.worker),
    el("td", { class: "num" }, event.duration_ms === undefined ? "" : ms(event.duration_ms)),
    el("td", { class: "detail" }, detailOf(event)),
    el("td", { class: "mono nowrap" }, event.trace_id ? shortId(event.trace_id, 16) : ""),
  );
}

function addEvents(events) {
  const tbody = document.querySelector("#events tbody");
  if (tbody.querySelector("td.empty")) tbody.replaceChildren();
  // Newest first, by when each happened: events of one task come from
  // several connections (the caller's, the workers'), which the broker does
  // not order among themselves.
  for (const event of events) {
    const at = timeOf(event);
    const later = [...tbody.rows].find((row) => Number(row.dataset.at) <= at);
    tbody.insertBefore(eventRow(event), later ?? null);
  }
  while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(tbody.rows.length - 1);
  eventsShown += events.length;
  document.getElementById("event-count").textContent = `(${eventsShown} received, newest first)`;
  if (tbody.rows.length === 0) {
    replaceRows(
      tbody,
      [],
      9,
      "No task events yet: workers publish them with TASK_EVENTS=true, the dispatcher too",
    );
  }
}

function renderLetters(functions, desk) {
  document.getElementById("letters-as").textContent = desk.available
    ? desk.as ? `(read and replayed as ${desk.as})` : ""
    : `(unavailable: ${desk.problem ?? "no broker"})`;
  const blocks = functions.map((f) => {
    const button = el("button", {
      type: "button",
      class: "danger replay",
      disabled: !desk.available || !f.deadLetters,
      "data-function": f.function,
    }, "Replay all");
    button.addEventListener("click", () => confirmReplay(f));
    const rows = f.letters.map((l) =>
      el(
        "tr",
        { "data-task-id": text(l.taskId) },
        el("td", { class: "bad" }, l.reason),
        el("td", {}, `${l.errorType}: ${l.errorMessage}`),
        el("td", { class: "num" }, num(l.attempts)),
        el("td", { class: "mono" }, l.at ? clock(l.at) : ""),
        el("td", { class: "mono nowrap" }, l.taskId ? shortId(l.taskId) : "(no id)"),
        el("td", { class: "mono body" }, l.body),
      )
    );
    const table = el(
      "table",
      {},
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ...["Reason", "Error", "Attempts", "At", "Task", "Body"].map((h) => el("th", {}, h)),
        ),
      ),
      el("tbody", {}),
    );
    replaceRows(table.tBodies[0], rows, 6, f.deadLetters ? "Reading…" : "None");
    return el(
      "div",
      { class: "letters", "data-function": f.function },
      el(
        "h3",
        {},
        `${f.function} (${f.queue}.dlq): `,
        el("span", { class: "count" }, num(f.deadLetters)),
        button,
      ),
      table,
    );
  });
  document.getElementById("dead-letters").replaceChildren(...blocks);
}

function render(next) {
  state = next;
  const mode = document.getElementById("mode");
  mode.textContent = next.mode;
  mode.dataset.mode = next.mode;
  document.getElementById("broker").textContent = next.broker;
  const notice = document.getElementById("notice");
  notice.hidden = !next.notice;
  notice.textContent = next.notice ?? "";
  document.getElementById("warnings").replaceChildren(
    ...next.warnings.map((w) => el("li", {}, w)),
  );
  renderFunctions(next.functions, next.mode === "live");
  renderScheduler(next.scheduler, next.functions);
  renderWorkers(next.workers);
  renderLetters(next.functions, next.deadLetters);
}

function toast(message) {
  const node = document.getElementById("toast");
  node.textContent = message;
  node.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => node.hidden = true, 8000);
}

let pending = null;

function confirmReplay(f) {
  pending = f.function;
  const as = state?.deadLetters?.as ?? "operator";
  document.getElementById("confirm-text").textContent =
    `Replay the ${f.deadLetters} dead letters of ${f.function} to ${f.queue}, as ${as}? ` +
    "Each runs again as a new request; letters that do not prove their origin stay.";
  document.getElementById("confirm").showModal();
}

async function replay(fn) {
  try {
    const response = await fetch("/api/replay", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ function: fn }),
    });
    const result = await response.json();
    if (!response.ok) {
      toast(`Replay failed: ${result.error}`);
      return;
    }
    const refused = result.refused.length > 0
      ? `; ${result.refused.length} left as they do not prove their origin`
      : "";
    toast(
      `Replayed ${result.replayed} dead letters of ${result.function} to ${result.queue} as ${result.as}${refused}`,
    );
  } catch (error) {
    toast(`Replay failed: ${error}`);
  }
}

function start() {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-cancel").addEventListener("click", () => {
    pending = null;
    dialog.close();
  });
  document.getElementById("confirm-replay").addEventListener("click", () => {
    const fn = pending;
    pending = null;
    dialog.close();
    if (fn) replay(fn);
  });
  addEvents([]);
  const stream = document.getElementById("stream");
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => stream.textContent = "live updates");
  source.addEventListener("error", () => stream.textContent = "updates lost: reconnecting…");
  source.addEventListener("state", (message) => render(JSON.parse(message.data)));
  source.addEventListener("tasks", (message) => {
    const events = JSON.parse(message.data);
    if (events.length > 0) addEvents(events);
  });
}

start();
