// tipstream console: keeps the runs page and a running run's page current by polling the
// JSON routes (no build step, no framework). Text goes in through textContent only.
"use strict";

const POLL_MS = 1000;
const TERMINAL = new Set(["finished", "failed", "cancelled"]);

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function num(value) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(3);
}

function when(value) {
  return value ? value.replace("T", " ").slice(0, 19) : "–";
}

function progressCell(run) {
  const span = el("span", null, { class: "progress", "data-field": "progress" });
  if (run.progress !== null && run.progress !== undefined) {
    span.append(el("progress", null, { max: "1", value: String(run.progress) }), " ");
  }
  const of = run.expected_events ? ` / ${run.expected_events}` : "";
  span.append(el("span", `${run.events}${of}`, { class: "count" }));
  return span;
}

function runRow(run) {
  const tr = el("tr", null, { "data-run-id": run.run_id });
  const link = el("a", run.run_id, { href: `/runs/${encodeURIComponent(run.run_id)}` });
  const first = el("td");
  first.append(link);
  const progress = el("td");
  progress.append(progressCell(run));
  tr.append(
    first,
    el("td", run.status, { class: `status status-${run.status}`, "data-field": "status" }),
    progress,
    el("td", run.policy), el("td", run.judge), el("td", run.via), el("td", run.personas),
    el("td", `${run.users} × ${run.rounds}`), el("td", run.seed),
    el("td", num(run.mean_reward), { "data-field": "mean_reward" }),
    el("td", when(run.created_at)),
    el("td", run.error || "", { class: "error", "data-field": "error" }),
  );
  return tr;
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function pollState(text) {
  const node = document.getElementById("poll-state");
  if (node) node.textContent = text;
}

async function pollRuns() {
  const tbody = document.querySelector("#runs tbody");
  try {
    const { runs } = await getJSON("/api/runs");
    const rows = runs.map(runRow);
    if (!rows.length) {
      const empty = el("tr", null, { class: "empty" });
      empty.append(el("td", "No runs in sim_runs yet.", { colspan: "12" }));
      rows.push(empty);
    }
    tbody.replaceChildren(...rows);
    pollState(`updated ${new Date().toLocaleTimeString()}`);
  } catch (err) {
    pollState(`not updated: ${err.message}`);
  }
  setTimeout(pollRuns, POLL_MS);
}

async function pollRun(box) {
  const runId = box.dataset.runId;
  const hadReport = document.getElementById("curve") !== null;
  try {
    const { run } = await getJSON(`/api/runs/${encodeURIComponent(runId)}`);
    const status = box.querySelector('[data-field="status"]');
    status.textContent = run.status;
    status.className = `status status-${run.status}`;
    box.querySelector('[data-field="progress"]').replaceWith(progressCell(run));
    box.dataset.status = run.status;
    pollState(`updated ${new Date().toLocaleTimeString()}`);
    if (TERMINAL.has(run.status) || (!hadReport && run.created_at)) {
      window.location.reload(); // the final figures, or the first ones
      return;
    }
    const curve = document.getElementById("curve");
    if (curve) {
      const response = await fetch(`/runs/${encodeURIComponent(runId)}/curve.svg`);
      if (response.ok) curve.innerHTML = await response.text(); // drawn and escaped by the server
    }
  } catch (err) {
    pollState(`not updated: ${err.message}`);
  }
  setTimeout(() => pollRun(box), POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "runs") setTimeout(pollRuns, POLL_MS);
  const box = document.getElementById("run");
  if (page === "run" && box && !TERMINAL.has(box.dataset.status)) setTimeout(() => pollRun(box), POLL_MS);
});
