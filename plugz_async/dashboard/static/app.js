// The operator's page of a plugz-async queue: it asks the dashboard's JSON API every few
// seconds and draws what it says. Every value goes in as text (never as HTML).
"use strict";

const body = document.body;
const REFRESH = Math.max(200, 1000 * Number(body.dataset.refresh || 2));
const WRITABLE = body.dataset.writable === "true";
const PAGE = 50;
const CHANNELS = ["sms", "voice", "wa_old"];
const DONE = new Set(["connected"]);
const state = { view: "all", offset: 0, total: 0, number: null };

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    tr.appendChild(cell instanceof Node ? cell : el("td", cell));
  }
  return tr;
}

function fill(tableId, rows) {
  const tbody = $(tableId).querySelector("tbody");
  tbody.replaceChildren(...rows);
}

function span(seconds) {
  const total = Math.max(0, Math.ceil(seconds));
  const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
  if (h) return m ? `${h}h${m}m` : `${h}h`;
  if (m) return s ? `${m}m${s}s` : `${m}m`;
  return `${s}s`;
}

function clock(iso) {
  const at = new Date(iso);
  const today = new Date().toDateString() === at.toDateString();
  return today ? at.toLocaleTimeString() : at.toLocaleString();
}

function ms(seconds) {
  return seconds >= 10 ? `${seconds.toFixed(0)} s` : `${Math.round(seconds * 1000)} ms`;
}

function statusClass(status, done, wants) {
  if (done) return DONE.has(status) ? "connected" : "failed";
  return wants ? "waiting" : "running-step";
}

function nextStep(reg, now, after) {
  if (!reg.next_at) return "";
  if (reg.wants) return `until ${clock(reg.next_at)}`;
  const late = (now - new Date(reg.next_at)) / 1000;
  if (late > after) return `overdue ${span(late)} (${clock(reg.next_at)})`;
  const left = -late;
  return left > 0 ? `in ${span(left)} (${clock(reg.next_at)})` : `now (${clock(reg.next_at)})`;
}

async function ask(path, options) {
  const answer = await fetch(path, { cache: "no-store", ...options });
  const said = await answer.json().catch(() => ({ error: `HTTP ${answer.status}` }));
  if (!answer.ok) throw new Error(said.error || `HTTP ${answer.status}`);
  return said;
}

function problem(text) {
  const p = $("problem");
  p.hidden = !text;
  p.textContent = text || "";
}

// -- the summary ---------------------------------------------------------------------------

let overdueAfter = 30;

function drawSummary(s) {
  overdueAfter = s.overdue.after;
  $("total").textContent = s.total;
  $("running").textContent = s.running;
  $("overdue-total").textContent = s.overdue.total;
  $("overdue-link").className = s.overdue.total ? "late" : "";
  const counts = Object.entries(s.counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  fill("counts", counts.map(([status, n]) => {
    const tr = row([el("td", status, statusClass(status, !(status in STEPS), false)), el("td", n, "n")]);
    tr.dataset.status = status;
    return tr;
  }));
  drawWorkers(s);
  drawLateness(s.lateness);
  drawTimeline(s.timeline);
  $("updated").textContent = `updated ${new Date(s.now).toLocaleTimeString()}`;
}

const STEPS = {
  check: 1, request_code: 1, answer_captcha: 1, confirm_code: 1,
  confirm_pin: 1, confirm_device: 1, poll_device: 1, confirm_connected: 1,
};

function drawWorkers(s) {
  const alive = s.workers.filter((w) => w.state === "alive");
  const running = alive.reduce((n, w) => n + w.running, 0);
  $("workers-line").textContent = alive.length
    ? `${alive.length} worker${alive.length === 1 ? "" : "s"} alive, ${running} step${running === 1 ? "" : "s"} running`
    : (s.workers.length ? "no worker alive: start plugz-async worker" : "no worker has run on this queue (in the last day): start plugz-async worker");
  $("workers-line").className = alive.length ? "ok" : "late";
  fill("workers", s.workers.map((w) => {
    const code = (w.lateness || {}).request_code;
    const tr = row([
      w.id.slice(0, 8), w.host, w.pid === null ? "" : w.pid, el("td", w.state, w.state),
      `${span(w.seen_ago)} ago (${clock(w.last_seen)})`,
      `${w.running}/${w.concurrency === null ? "?" : w.concurrency}`,
      code ? ms(code.p99) : "",
    ]);
    tr.dataset.worker = w.id;
    return tr;
  }));
}

function drawLateness(lateness) {
  const order = ["check", "request_code", "answer_captcha", "confirm_code", "confirm_pin", "confirm_device", "poll_device", "confirm_connected"];
  const kinds = Object.keys(lateness).sort((a, b) => order.indexOf(a) - order.indexOf(b));
  fill("lateness", kinds.map((kind) => {
    const s = lateness[kind];
    return row([kind, el("td", s.count, "n"), el("td", ms(s.p50), "n"), el("td", ms(s.p99), "n"),
      el("td", ms(s.max), "n"), el("td", s.early, s.early ? "n late" : "n")]);
  }));
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawTimeline(t) {
  const start = new Date(t.start).getTime(), end = new Date(t.end).getTime();
  const W = 960, left = 70, top = 20, lane = 28, H = top + lane * CHANNELS.length + 24;
  const x = (at) => left + ((at - start) / (end - start)) * (W - left - 40);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "channel windows of the next hour" });
  for (let minute = 0; minute <= 60; minute += 10) {
    const at = start + minute * 60000;
    chart.appendChild(svg("line", { x1: x(at), x2: x(at), y1: top - 6, y2: H - 20, stroke: "#e3e3df" }));
    chart.appendChild(svg("text", { x: x(at), y: H - 6, "text-anchor": "middle", "font-size": 11, fill: "#6b7280" },
      minute ? `+${minute} min` : "now"));
  }
  CHANNELS.forEach((channel, i) => {
    chart.appendChild(svg("text", { x: 0, y: top + lane * i + 16, "font-size": 12 }, channel));
  });
  for (const w of t.windows) {
    const i = CHANNELS.indexOf(w.channel);
    if (i < 0) continue;
    const at = Math.min(Math.max(new Date(w.at).getTime(), start), end);
    const mark = svg("rect", { x: x(at) - 1.5, y: top + lane * i + 2, width: 3, height: lane - 8, class: w.channel });
    mark.appendChild(svg("title", {}, `${w.number}: ${w.channel} opens ${clock(w.at)}`));
    chart.appendChild(mark);
  }
  $("timeline").replaceChildren(chart);
  const shown = t.windows.length;
  let line = `${shown} code request${shown === 1 ? "" : "s"} due in the next hour`;
  if (t.read < t.due) line += ` (of the first ${t.read} of ${t.due} steps due; the rest are not drawn)`;
  $("timeline-line").textContent = line;
}

// -- the list and one registration -----------------------------------------------------------

// A registration's last error; else what its instance said when it did not connect.
function errorOf(r) {
  if (r.error) return r.error;
  return r.instance_error ? `the instance says: ${r.instance_error}` : "";
}

function drawList(page) {
  state.total = page.total;
  const now = new Date();
  fill("registrations", page.registrations.map((r) => {
    const link = el("a", r.number, "number");
    link.href = "#one";
    link.addEventListener("click", (event) => { event.preventDefault(); show(r.number); });
    const number = el("td"); number.appendChild(link);
    const tr = row([number, r.instance, el("td", r.status, statusClass(r.status, r.done, r.wants)),
      r.channel || "", r.wants || "", nextStep(r, now, overdueAfter), el("td", errorOf(r), "late")]);
    tr.dataset.number = r.number;
    return tr;
  }));
  if (page.offset > 0 && page.offset >= page.total) {  // the list shrank under this page
    state.offset = Math.max(0, Math.floor((page.total - 1) / PAGE) * PAGE);
  }
  const first = page.registrations.length ? page.offset + 1 : 0;
  const last = page.offset + page.registrations.length;
  $("page-line").textContent = `${first}-${last} of ${page.total}`;
  $("prev").disabled = page.offset === 0;
  $("next").disabled = last >= page.total;
}

function drawOne(r) {
  $("one").hidden = false;
  $("one-number").textContent = r.number;
  const facts = [["Number", r.number], ["Instance", r.instance], ["Status", r.status], ["Step", r.step],
    ["Channel", r.channel || "—"]];
  if (r.wants) facts.push(["Waits for", r.wants]);
  if (r.next_at) facts.push(["Next step", nextStep(r, new Date(), overdueAfter)]);
  if (r.error) facts.push(["Error", r.error]);
  if (r.status === "connected") facts.push(["Connected", "yes"]);
  if (r.status === "not_connected") facts.push(["Connected", `no: ${r.instance_error || "no reason given"}`]);
  facts.push(["Version", r.version]);
  $("one-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
  fill("events", r.events.map((e) => row([clock(e.at), e.kind, e.channel || "", e.message])));
  $("cancel-form").hidden = !WRITABLE || r.done;
}

async function show(number) {
  state.number = number;
  $("cancel-said").textContent = "";
  try {
    drawOne(await ask(`api/registrations/${encodeURIComponent(number)}`));
  } catch (error) {
    problem(`cannot show ${number}: ${error.message}`);
  }
}

async function cancel(event) {
  event.preventDefault();
  const token = $("token").value;
  try {
    const r = await ask(`api/registrations/${encodeURIComponent(state.number)}/cancel`, {
      method: "POST", headers: { Authorization: `Bearer ${token}` },
    });
    $("cancel-said").textContent = `cancel asked: ${r.status}`;
    drawOne(r);
  } catch (error) {
    $("cancel-said").textContent = error.message;
  }
}

async function refresh() {
  try {
    drawSummary(await ask("api/summary"));
    drawList(await ask(`api/registrations?view=${state.view}&offset=${state.offset}&limit=${PAGE}`));
    if (state.number) drawOne(await ask(`api/registrations/${encodeURIComponent(state.number)}`));
    problem("");
    body.dataset.updates = String(Number(body.dataset.updates || 0) + 1);
  } catch (error) {
    problem(`cannot update: ${error.message}`);
  }
}

$("view").addEventListener("change", () => { state.view = $("view").value; state.offset = 0; refresh(); });
$("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); refresh(); });
$("next").addEventListener("click", () => { state.offset += PAGE; refresh(); });
$("overdue-link").addEventListener("click", () => { $("view").value = "overdue"; state.view = "overdue"; state.offset = 0; refresh(); });
$("cancel-form").addEventListener("submit", cancel);

async function loop() {
  await refresh();
  setTimeout(loop, REFRESH);
}
loop();
