// The city board (engine/board.py): polls /board/data and fills the server-drawn map, the
// district table and the feeds; /board/districts/{code} for the drill-down (also #code in
// the address, so a district's view can be linked). No library, no build step.
"use strict";

const POLL_MS = 3000;
// every figure is also written on the map's path as data-<name> (underscores as dashes), so
// a test or a screen reader can read what the colour stands for
const FIGURES = ["backlog", "overdue", "yellow", "red", "received", "responded", "resolved",
  "rated", "satisfied", "response_rate", "resolution_rate", "satisfaction_rate"];
const COLUMNS = ["backlog", "red", "yellow", "received", "response_rate", "resolution_rate",
  "satisfaction_rate"];
const RATES = new Set(["response_rate", "resolution_rate", "satisfaction_rate"]);

const state = { data: null, sort: "backlog", desc: true, drill: null, timer: null };
const $ = (sel) => document.querySelector(sel);

function rate(v) {
  return v === null || v === undefined ? "—" : (v * 100).toFixed(1) + "%";
}

function bin(row) {
  if (!row.backlog) return "bin-none";
  const share = row.overdue / row.backlog;
  if (share === 0) return "bin-0";
  if (share <= 0.1) return "bin-1";
  if (share <= 0.25) return "bin-2";
  if (share <= 0.5) return "bin-3";
  return "bin-4";
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c));
  return e;
}

function clock(iso, tz) {
  if (!iso) return "";
  return new Intl.DateTimeFormat("zh-CN", {
    timeZone: tz, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  }).format(new Date(iso));
}

function cells(row, name) {
  const tds = [name];
  for (const f of COLUMNS) {
    const v = row[f];
    const cls = ["num", "f-" + f];
    if (f === "red" && v) cls.push("red");
    if (f === "yellow" && v) cls.push("yellow");
    if (!RATES.has(f) && !v) cls.push("zero");
    tds.push(el("td", { class: cls.join(" "), "data-field": f },
      RATES.has(f) ? rate(v) : String(v)));
  }
  return tds;
}

function figureAttrs(node, row) {
  for (const f of FIGURES) {
    const v = row[f];
    node.setAttribute("data-" + f.replace(/_/g, "-"), v === null ? "" : String(v));
  }
}

function renderKpis(city) {
  for (const kpi of document.querySelectorAll("#kpis .kpi")) {
    const f = kpi.dataset.field;
    kpi.querySelector("b").textContent = RATES.has(f) ? rate(city[f]) : String(city[f]);
    kpi.setAttribute("data-value", city[f] === null ? "" : String(city[f]));
  }
}

function renderMap(districts) {
  for (const row of districts) {
    const path = document.getElementById("d-" + row.code);
    if (!path) continue;
    figureAttrs(path, row);
    path.setAttribute("class", "district " + bin(row) +
      (state.drill === row.code ? " selected" : ""));
    const share = row.backlog ? ` (${rate(row.overdue_share)})` : "";
    path.querySelector("title").textContent =
      `${row.name}  积压 ${row.backlog} · 红 超期 ${row.red}${share} · 黄 催办 ${row.yellow}` +
      ` · 受理 ${row.received} · 响应率 ${rate(row.response_rate)}` +
      ` · 解决率 ${rate(row.resolution_rate)} · 满意率 ${rate(row.satisfaction_rate)}`;
  }
}

function sorted(rows) {
  const k = state.sort;
  const dir = state.desc ? -1 : 1;
  return [...rows].sort((a, b) => {
    if (k === "name") return a.code < b.code ? -dir : dir;
    const x = a[k] ?? -1;
    const y = b[k] ?? -1;
    return x === y ? (a.code < b.code ? -1 : 1) : (x < y ? -dir : dir);
  });
}

function renderTable(districts) {
  const body = $("#districts tbody");
  body.replaceChildren(...sorted(districts).map((row) => {
    const name = el("td", {}, el("span", { class: "swatch " + bin(row) }), row.name);
    const tr = el("tr", { "data-code": row.code,
      class: state.drill === row.code ? "selected" : "" }, ...cells(row, name));
    figureAttrs(tr, row);
    tr.addEventListener("click", () => { location.hash = row.code; });
    return tr;
  }));
  for (const th of document.querySelectorAll("#districts th[data-sort]")) {
    th.classList.toggle("sorted", th.dataset.sort === state.sort);
  }
}

function renderEscalations(list, tz) {
  const ol = $("#escalations");
  if (!list.length) {
    ol.replaceChildren(el("li", { class: "empty" }, "none since the workers started"));
    return;
  }
  ol.replaceChildren(...list.map((e) => el("li", { "data-id": e.id, "data-kind": e.kind },
    el("span", { class: "when" }, clock(e.at, tz)),
    el("span", { class: "level" }, `督办 L${e.level}`),
    `${e.late_name || e.late_unit || "?"} → ${e.top ? "市级 top" : e.supervisor_name || "?"}`,
    el("span", { class: "id" }, `${e.kind === "case" ? "case" : "directive"} ${e.id}` +
      (e.stage ? ` · ${e.stage}` : "")))));
}

function renderDirectives(list, tz) {
  const ol = $("#directives");
  if (!list.length) {
    ol.replaceChildren(el("li", { class: "empty" }, "none"));
    return;
  }
  ol.replaceChildren(...list.map((d) => {
    const pct = Math.round(d.ack_ratio * 1000) / 10;
    const bar = el("div", { class: "ratio" }, el("span", { style: `width:${pct}%` }));
    const full = d.fully_acknowledged_at ? " · 全部签收 all signed" : "";
    return el("li", { "data-id": d.directive_id, "data-ack-ratio": String(d.ack_ratio),
      "data-acknowledged": String(d.acknowledged), "data-targets": String(d.targets) },
    el("span", { class: "when" }, clock(d.issued_at, tz)), el("b", {}, d.title),
    el("span", { class: "id" }, `${d.issuer_name} → ${d.targets} 单位 · 签收 ` +
      `${d.acknowledged}/${d.targets} (${pct}%)${full} · 反馈 ${d.reported}` +
      (d.escalated ? ` · 督办 ${d.escalated}` : "")), bar);
  }));
}

function renderHotspots(list, tz) {
  const ol = $("#hotspots");
  if (!list.length) {
    ol.replaceChildren(el("li", { class: "empty" }, "none today"));
    return;
  }
  ol.replaceChildren(...list.map((h) => el("li", { "data-id": h.insight_id,
    "data-reports": String(h.reports), "data-cases": String(h.cases) },
  el("span", { class: "when" }, clock(h.at, tz)), el("b", {}, String(h.category)),
  ` @ ${h.place}`,
  el("span", { class: "id" }, `${h.unit_name || h.unit} ${h.unit} · 诉 ${h.reports} reports` +
    ` · ${h.cases} cases`))));
}

function renderDisputes(list, open, tz) {
  const ol = $("#disputes");
  $("#disputes-count").textContent = open ? `${open} open` : "";
  if (!list.length) {
    ol.replaceChildren(el("li", { class: "empty" }, "none open today"));
    return;
  }
  ol.replaceChildren(...list.map((d) => el("li", { "data-id": d.insight_id,
    "data-case": String(d.case_id), "data-arbiter": String(d.arbiter) },
  el("span", { class: "when" }, clock(d.at, tz)), el("b", {}, String(d.category)),
  ` ${(d.units || []).join(" ⇄ ")} → ${d.arbiter_name || d.arbiter}`,
  el("span", { class: "id" }, `case ${d.case_id} · 裁决 arbiter ${d.arbiter}`))));
}

function render(data) {
  state.data = data;
  $("#day").textContent = data.day;
  const scope = $("#scope");
  const cov = data.coverage;
  scope.textContent = data.scope;
  // a part of the city must not pass for the whole: partial coverage is shown as such
  scope.classList.toggle("partial", cov.counted < cov.partitions);
  scope.setAttribute("data-counted", String(cov.counted));
  scope.setAttribute("data-partitions", String(cov.partitions));
  scope.setAttribute("data-as-of", cov.as_of || "");
  $("#status").textContent = "updated " + clock(data.generated_at, data.timezone);
  renderKpis(data.city);
  renderMap(data.districts);
  renderTable(data.districts);
  renderEscalations(data.escalations, data.timezone);
  renderDirectives(data.directives, data.timezone);
  renderHotspots(data.hotspots || [], data.timezone);
  renderDisputes(data.disputes || [], data.open_disputes || 0, data.timezone);
  document.body.dataset.state = "ready";
  document.body.dataset.updated = data.generated_at;
}

async function refresh() {
  clearTimeout(state.timer);
  try {
    const r = await fetch("/board/data", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
    if (state.drill) await loadDistrict(state.drill);
  } catch (err) {
    document.body.dataset.state = "error";
    $("#status").textContent = "not updated: " + err.message + " (retrying)";
  }
  state.timer = setTimeout(refresh, POLL_MS);
}

async function loadDistrict(code) {
  const r = await fetch("/board/districts/" + encodeURIComponent(code), { cache: "no-store" });
  if (!r.ok) throw new Error("HTTP " + r.status);
  const d = await r.json();
  if (state.drill !== code) return; // closed or another chosen meanwhile
  $("#drill").dataset.code = code;
  $("#drill-name").textContent = d.name;
  $("#drill-summary").textContent = `积压 ${d.backlog} · 红 ${d.red} · 黄 ${d.yellow} · ` +
    `受理 ${d.received} · 响应率 ${rate(d.response_rate)} · 解决率 ${rate(d.resolution_rate)}` +
    ` · 满意率 ${rate(d.satisfaction_rate)}`;
  $("#streets tbody").replaceChildren(...d.children.map((row) => {
    const tr = el("tr", { "data-code": row.code, class: row.level }, ...cells(row, row.name));
    figureAttrs(tr, row);
    return tr;
  }));
}

function choose() {
  const code = /^#(\d{6})$/.exec(location.hash)?.[1] || null;
  state.drill = code;
  $("#drill").hidden = !code;
  $("#districts-view").hidden = Boolean(code);
  if (state.data) {
    renderMap(state.data.districts);
    renderTable(state.data.districts);
  }
  if (code) loadDistrict(code).catch((err) => {
    $("#drill-summary").textContent = "not loaded: " + err.message;
  });
}

document.querySelector("#map").addEventListener("click", (ev) => {
  const code = ev.target.closest("path.district")?.dataset.code;
  if (code) location.hash = code;
});
$("#drill-close").addEventListener("click", () => {
  history.pushState(null, "", location.pathname);
  choose();
});
for (const th of document.querySelectorAll("#districts th[data-sort]")) {
  th.addEventListener("click", () => {
    const k = th.dataset.sort;
    state.desc = state.sort === k ? !state.desc : k !== "name";
    state.sort = k;
    if (state.data) renderTable(state.data.districts);
  });
}
window.addEventListener("hashchange", choose);
choose();
refresh();
