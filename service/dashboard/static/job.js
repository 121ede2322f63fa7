// Job (/jobs/{id}): progress, plots, the trials table and one trial's network, followed live.
import { download, text, duration, el, empty, fmt, follow, get, pace, plot, post, seconds, stateBadge, toast } from "./common.js";
import { drawArchitecture } from "./draw.js";

const jobId = Number(location.pathname.split("/").filter(Boolean).pop());
const $ = (id) => document.getElementById(id);
const state = {
  job: null, trials: new Map(), selected: new Set(), chosen: null, userSelected: false,
  sort: { key: "number", dir: 1 }, importance: null, importanceAt: -1,
};
const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

// imported results and submitted models (check_nn) are jobs without a search's spec: their one
// objective is the dataset's metric on the validation split
const objectives = () => state.job.spec.objectives ?? [{ metric: `val_${state.job.metric}`, direction: "maximize" }];
const strategy = () => state.job.spec.strategy ?? { sampler: state.job.spec.kind === "model" ? "check_nn" : "imported", pruner: "none" };
const epochsPlanned = () => state.job.spec.budget?.epochs ?? state.job.spec.prm?.epoch ?? "?";
const done = (t) => t.state === "complete" && t.values;
const sign = (o) => (o.direction === "maximize" ? 1 : -1);
const frontNumbers = () => new Set(state.job.best_trials.map((t) => t.number));

// ---- the head: state, counts, best, elapsed, ETA, cancel --------------------------------------
function renderHead() {
  const job = state.job;
  document.title = `${job.name} · Cellar`;
  $("job-title").textContent = `Job ${job.id}: ${job.name}`;
  $("job-state").replaceWith(Object.assign(stateBadge(job.status), { id: "job-state" }));
  const { elapsed, eta } = pace(job);
  const finished = job.counts.complete + job.counts.pruned + job.counts.failed;
  const best = job.best_trial ? `${fmt(job.best_trial.values[0])} (trial ${job.best_trial.number})`
    : job.best_trials.length ? `${job.best_trials.length} non-dominated` : "–";
  const facts = [
    ["space", job.search_space], ["dataset", `${job.dataset} (${job.task})`],
    ["objectives", objectives().map((o) => `${o.direction} ${o.metric}`).join(", ")],
    ["sampler", `${strategy().sampler}${strategy().pruner !== "none" ? ` + ${strategy().pruner}` : ""}`],
    ["trials", `${finished}/${job.max_trials ?? "∞"} (${job.counts.running} running, ${job.counts.pruned} pruned, ${job.counts.failed} failed)`],
    ["best", best], [job.simulated_on ? "simulated time" : "elapsed", duration(elapsed)],
    ["ETA", job.finished_at ? "done" : job.simulated_on ? "–" : duration(eta)],
  ];
  // a job looked up in a results table, on its simulated clock (GET /v1/jobs/{id}: simulated_on)
  if (job.simulated_on) facts.unshift(["simulated on", `table ${job.simulated_on}`]);
  // strategy.screen: scored on the workers before the first trial (GET /v1/jobs/{id}: screen)
  const screen = strategy().screen;
  if (job.screen) facts.push(["screened", `${job.screen.samples} by ${job.screen.proxy} in ${duration(job.screen.seconds)}, best ${job.screen.kept.length} first`]);
  else if (screen && !job.simulated_on && !job.finished_at) facts.push(["screened", `scoring ${screen.samples} by ${screen.proxy}…`]);
  $("job-summary").replaceChildren(...facts.map(([k, v]) => el("span", { "data-fact": k }, `${k} `, el("b", { text: v }))));
  const share = job.max_trials ? finished / job.max_trials : job.finished_at ? 1 : 0;
  $("job-progress").style.width = `${Math.min(100, share * 100).toFixed(1)}%`;
  $("job-error").hidden = !job.error;
  $("job-error").textContent = job.error ?? "";
  $("cancel").hidden = FINISHED.has(job.status) || job.cancel_requested;
  $("extend").hidden = !FINISHED.has(job.status);
  $("delete").hidden = job.status === "running";
}

$("extend").addEventListener("click", async () => {
  const asked = state.job.counts.total;
  const answer = window.prompt(`Job ${jobId} asked ${asked} trials. New total of trials:`, String(asked + 10));
  if (answer === null) return;
  try {
    state.job = await post(`/v1/jobs/${jobId}/extend`, { max_trials: Number(answer) });
    renderHead();
    toast(`Job ${jobId} queued again, up to ${state.job.max_trials} trials`);
    followJob();
  } catch (error) {
    toast(`Not extended: ${error.detail ?? error.message}`);
  }
});

$("delete").addEventListener("click", async () => {
  if (!window.confirm(`Delete job ${jobId} with its trials and kept weights? This cannot be undone.`)) return;
  try {
    await post(`/v1/jobs/${jobId}`, undefined, "DELETE");
    location.assign("/");
  } catch (error) {
    toast(`Not deleted: ${error.detail ?? error.message}`);
  }
});

$("cancel").addEventListener("click", async () => {
  if (!window.confirm(`Cancel job ${jobId}? Running trials stop within seconds; finished ones stay.`)) return;
  try {
    state.job = await post(`/v1/jobs/${jobId}/cancel`);
    renderHead();
    toast(`Job ${jobId}: cancel requested`);
  } catch (error) {
    toast(`Not cancelled: ${error.message}`);
  }
});

// ---- plots ------------------------------------------------------------------------------------
function renderBest() {
  const div = $("plot-best");
  const byTime = document.querySelector("input[name=best-x]:checked").value === "time";
  const complete = [...state.trials.values()].filter(done).sort((a, b) => byTime
    ? seconds(a.finished_at) - seconds(b.finished_at) : a.number - b.number);
  if (!complete.length) return empty(div, "no complete trial yet");
  const start = seconds(state.job.started_at) ?? seconds(complete[0].started_at);
  const x = complete.map((t) => (byTime ? seconds(t.finished_at) - start : t.number));
  const traces = [];
  objectives().forEach((objective, i) => {
    let best = null;
    const running = complete.map((t) => (best = best === null || sign(objective) * (t.values[i] - best) > 0 ? t.values[i] : best));
    const axis = i === 0 ? {} : { yaxis: `y${i + 1}` };
    traces.push({ x, y: complete.map((t) => t.values[i]), mode: "markers", name: `${objective.metric}`,
      marker: { size: 6, opacity: 0.45 }, text: complete.map((t) => `trial ${t.number}`), ...axis });
    traces.push({ x, y: running, mode: "lines", line: { shape: "hv", width: 2 }, name: `best ${objective.metric}`, ...axis });
  });
  const layout = { xaxis: { title: { text: byTime ? "seconds since the job started" : "trial number" } },
    yaxis: { title: { text: objectives()[0].metric } } };
  if (objectives().length > 1) layout.yaxis2 = { title: { text: objectives()[1].metric }, overlaying: "y", side: "right" };
  plot(div, traces.filter((t) => !t.yaxis || t.yaxis === "y2"), layout);
}

function renderCurves() {
  const div = $("plot-curves");
  const shown = [...state.selected].map((n) => state.trials.get(n)).filter((t) => t && t.epochs.length);
  if (!shown.length) return empty(div, "select trials in the table to see their curves");
  plot(div, shown.map((t) => ({
    x: t.epochs.map((e) => e.epoch), y: t.epochs.map((e) => e.val_metric), mode: "lines+markers",
    name: `trial ${t.number}${t.state === "running" ? " (running)" : ""}`,
  })), { xaxis: { title: { text: "epoch" }, dtick: 1 }, yaxis: { title: { text: `validation ${state.job.metric}` } }, showlegend: true });
}

function renderPareto() {
  const box = $("pareto-box");
  if (objectives().length < 2) { box.hidden = true; return; }
  box.hidden = false;
  const div = $("plot-pareto");
  const complete = [...state.trials.values()].filter(done);
  if (!complete.length) return empty(div, "no complete trial yet");
  const front = frontNumbers();
  const names = objectives().map((o) => `${o.metric} (${o.direction === "maximize" ? "max" : "min"})`);
  if (objectives().length === 2) {
    const on = complete.filter((t) => front.has(t.number)).sort((a, b) => a.values[0] - b.values[0]);
    const off = complete.filter((t) => !front.has(t.number));
    const trace = (ts, name, marker, mode = "markers") => ({ x: ts.map((t) => t.values[0]), y: ts.map((t) => t.values[1]),
      text: ts.map((t) => `trial ${t.number}`), mode, name, marker, customdata: ts.map((t) => t.number) });
    plot(div, [trace(off, "dominated", { color: "#9ca3af", size: 7 }),
      trace(on, "non-dominated", { color: "#dc2626", size: 10 }, "lines+markers")],
    { xaxis: { title: { text: names[0] } }, yaxis: { title: { text: names[1] } }, showlegend: true });
    div.removeAllListeners?.("plotly_click");
    div.on?.("plotly_click", (event) => showTrial(event.points[0].customdata));
  } else {
    plot(div, [{ type: "parcoords", line: { color: complete.map((t) => (front.has(t.number) ? 1 : 0)),
      colorscale: [[0, "#cbd5e1"], [1, "#dc2626"]] },
      dimensions: objectives().map((o, i) => ({ label: names[i], values: complete.map((t) => t.values[i]) })) }]);
  }
}

function renderParams() {
  const div = $("plot-params");
  const complete = [...state.trials.values()].filter(done);
  if (complete.length < 2) return empty(div, "two complete trials are needed");
  const names = [...new Set(complete.flatMap((t) => Object.keys(t.choices)))].sort();
  const dimensions = names.map((name) => {
    const raw = complete.map((t) => t.choices[name]);
    if (raw.every((v) => typeof v === "number" || v === undefined)) {
      return { label: name, values: raw.map((v) => v ?? NaN) };
    }
    const levels = [...new Set(raw.map((v) => String(v ?? "–")))].sort();
    return { label: name, values: raw.map((v) => levels.indexOf(String(v ?? "–"))), tickvals: levels.map((_, i) => i), ticktext: levels };
  });
  const target = objectives()[0];
  dimensions.push({ label: target.metric, values: complete.map((t) => t.values[0]) });
  plot(div, [{ type: "parcoords", line: { color: complete.map((t) => t.values[0]), colorscale: "Viridis",
    reversescale: target.direction === "minimize", showscale: true }, dimensions }], { margin: { l: 70, r: 70, t: 50, b: 20 } });
}

async function renderImportance() {
  const div = $("plot-importance");
  const complete = [...state.trials.values()].filter(done).length;
  if (complete < 2) return empty(div, "two complete trials are needed");
  if (state.importanceAt !== complete) {
    // a failed fetch (the server restarting) leaves the count unset, so the next render asks again;
    // a render that overlaps a fetch in flight draws nothing until that fetch has answered
    try { state.importance = await get(`/v1/jobs/${jobId}/importance`); } catch (error) { return empty(div, error.detail ?? error.message); }
    state.importanceAt = complete;
  }
  if (!state.importance) return;
  const shown = state.importance.objectives.filter((o) => Object.keys(o.importances).length);
  if (!shown.length) return empty(div, "no parameter varies yet");
  plot(div, shown.map((o) => {
    const entries = Object.entries(o.importances).sort((a, b) => a[1] - b[1]);
    return { type: "bar", orientation: "h", name: o.metric, x: entries.map((e) => e[1]), y: entries.map((e) => e[0]) };
  }), { margin: { l: 140, r: 15, t: 10, b: 40 }, xaxis: { title: { text: `importance (${state.importance.evaluator})` } } });
}

// ---- the trials table -------------------------------------------------------------------------
function columns() {
  const cols = [
    { key: "select", label: "", value: () => 0 },
    { key: "number", label: "#", value: (t) => t.number, num: true },
    { key: "state", label: "state", value: (t) => t.state },
  ];
  objectives().forEach((o, i) => cols.push({ key: `value${i}`, label: o.metric, value: (t) => t.values?.[i] ?? null, num: true }));
  // the trial's own columns, unless an objective already shows them
  const shown = new Set(objectives().map((o) => ({ val_accuracy: "val_metric", val_rmse: "val_metric" })[o.metric] ?? o.metric));
  cols.push(
    { key: "val_metric", label: `val ${state.job.metric}`, value: (t) => t.val_metric, num: true },
    { key: "epochs", label: "epochs", value: (t) => t.epochs.length, num: true },
    { key: "params", label: "params", value: (t) => t.params, num: true },
    { key: "train_seconds", label: "train s", value: (t) => t.train_seconds, num: true },
    { key: "origin", label: "origin", value: (t) => (t.cache_hit ? "cache" : t.duplicate_of ? "duplicate" : t.origin) },
    { key: "arch", label: "architecture", value: (t) => t.arch ?? t.nn ?? "" },
  );
  return cols.filter((c) => !shown.has(c.key) || c.key.startsWith("value"));
}

function passes(t) {
  const wanted = $("trial-state").value;
  if (wanted && t.state !== wanted) return false;
  const low = $("metric-min").value, high = $("metric-max").value;
  if ((low !== "" || high !== "") && t.val_metric === null) return false;
  if (low !== "" && t.val_metric < Number(low)) return false;
  if (high !== "" && t.val_metric > Number(high)) return false;
  return true;
}

function renderTable() {
  const cols = columns();
  const head = document.querySelector("#trials thead tr");
  head.replaceChildren(...cols.map((c) => el("th", {
    "data-key": c.key, class: [c.num ? "num" : "", state.sort.key === c.key ? (state.sort.dir > 0 ? "sorted-asc" : "sorted-desc") : ""].join(" ").trim() || null,
    text: c.label, onclick: () => { if (c.key === "select") return; state.sort = { key: c.key, dir: state.sort.key === c.key ? -state.sort.dir : 1 }; renderTable(); },
  })));
  const col = cols.find((c) => c.key === state.sort.key) ?? cols[1];
  const rows = [...state.trials.values()].filter(passes).sort((a, b) => {
    const x = col.value(a), y = col.value(b);
    if (x === y) return a.number - b.number;
    if (x === null) return 1; if (y === null) return -1;
    return (x < y ? -1 : 1) * state.sort.dir;
  });
  const front = frontNumbers();
  document.querySelector("#trials tbody").replaceChildren(...rows.map((t) => el("tr", {
    "data-number": t.number, class: [state.chosen === t.number ? "selected" : "", front.has(t.number) ? "front" : ""].join(" ").trim() || null,
    onclick: (event) => { if (event.target.tagName !== "INPUT") showTrial(t.number); },
  }, ...cols.map((c) => {
    if (c.key === "select") {
      return el("td", {}, el("input", { type: "checkbox", title: "show its learning curve", checked: state.selected.has(t.number),
        onchange: (event) => { state.userSelected = true; event.target.checked ? state.selected.add(t.number) : state.selected.delete(t.number); renderCurves(); } }));
    }
    if (c.key === "state") return el("td", {}, stateBadge(t.state));
    const v = c.value(t);
    if (c.key === "epochs") return el("td", { class: "num", text: `${v}/${epochsPlanned()}` });
    if (c.key === "arch") return el("td", { class: "arch", title: v, text: v.length > 60 ? `${v.slice(0, 60)}…` : v });
    return el("td", { class: c.num ? "num" : null, text: fmt(v) });
  }))));
}

for (const id of ["trial-state", "metric-min", "metric-max"]) $(id).addEventListener("input", renderTable);
for (const radio of document.querySelectorAll("input[name=best-x]")) radio.addEventListener("change", renderBest);

// ---- one trial: its drawing and its code ------------------------------------------------------
async function showTrial(number) {
  state.chosen = number;
  renderTable();
  let trial;
  try { trial = await get(`/v1/jobs/${jobId}/trials/${number}`); } catch (error) { return toast(error.message); }
  $("trial-detail").hidden = false;
  $("trial-title").textContent = `Trial ${trial.number}${trial.nn ? `: ${trial.nn}` : ""}`;
  const facts = [["state", trial.state], ["values", trial.values ? trial.values.map((v) => fmt(v)).join(", ") : "–"],
    ["params", fmt(trial.params)], ["FLOPs", fmt(trial.flops)], ["latency ms", fmt(trial.latency_ms)],
    ["seed", trial.seed], ["worker", trial.worker ?? "–"], ["arch", trial.arch ?? "–"]];
  $("trial-facts").replaceChildren(...facts.map(([k, v]) => el("span", {}, `${k} `, el("b", { text: v }))));
  drawArchitecture($("drawing"), trial.drawing);
  $("trial-code").textContent = trial.nn_code ?? "(no code)";
  $("trial-error").hidden = !trial.error;
  $("trial-error").textContent = trial.error ?? "";
  const log = await text(`/v1/jobs/${jobId}/trials/${trial.number}/log`).catch((error) => `(${error.message})`);
  $("trial-log").textContent = log || "(nothing printed)";
  const download = $("download-weights");
  download.hidden = !trial.weights;
  download.onclick = () => saveWeights(trial);
  if (!state.userSelected) { state.selected.add(number); renderCurves(); renderTable(); }
}

async function saveWeights(trial) {
  try {
    const blob = await download(`/v1/jobs/${jobId}/trials/${trial.number}/weights`);
    const link = el("a", { href: URL.createObjectURL(blob), download: `${trial.nn ?? `trial-${trial.number}`}.pt` });
    document.body.append(link); link.click(); link.remove();
    toast(`weights of trial ${trial.number}: torch.load(path, weights_only=True), then Net(...).load_state_dict`);
  } catch (error) {
    toast(`No weights: ${error.detail ?? error.message}`);
  }
}

$("copy-code").addEventListener("click", async () => {
  const code = $("trial-code").textContent;
  try { await navigator.clipboard.writeText(code); toast("nn_code copied"); } catch (_) {
    const range = document.createRange(); range.selectNodeContents($("trial-code"));
    getSelection().removeAllRanges(); getSelection().addRange(range); toast("selected: press Ctrl+C to copy");
  }
});

// ---- loading and following --------------------------------------------------------------------
function defaultSelection() {
  if (state.userSelected) return;
  const best = state.job.best_trial ? [state.job.best_trial.number] : state.job.best_trials.slice(0, 5).map((t) => t.number);
  const running = [...state.trials.values()].filter((t) => t.state === "running").map((t) => t.number);
  state.selected = new Set([...best, ...running]);
}

function renderAll() {
  renderHead(); renderTable(); renderBest(); renderCurves(); renderPareto(); renderParams(); renderImportance();
}

async function load() {
  const [job, trials] = await Promise.all([get(`/v1/jobs/${jobId}`), get(`/v1/jobs/${jobId}/trials`)]);
  state.job = job;
  state.trials = new Map(trials.data.map((t) => [t.number, t]));
  $("metric-label").textContent = `val ${job.metric}`;
  defaultSelection();
  renderAll();
}

let reloadTimer = null;
function reloadSoon() { clearTimeout(reloadTimer); reloadTimer = setTimeout(() => load().catch((e) => toast(e.message)), 300); }

let frame = null;
function onEvent(name, data) {
  if (name === "job") {
    const finishedNow = state.job && !FINISHED.has(state.job.status) && FINISHED.has(data.status);
    state.job = data; renderHead();
    if (finishedNow) reloadSoon();
  } else if (name === "trial") {
    const trial = state.trials.get(data.number);
    if (data.kind === "epoch" && trial) {
      if (!trial.epochs.some((e) => e.epoch === data.epoch)) trial.epochs.push({ ...data });
      trial.val_metric = data.val_metric;
      if (!state.userSelected) state.selected.add(data.number);
      if (!frame) frame = requestAnimationFrame(() => { frame = null; renderTable(); renderCurves(); });
    } else {
      reloadSoon(); // a trial began or ended: read the job's trials again
    }
  }
}

async function followJob() {
  while (state.job && !FINISHED.has(state.job.status)) {
    try { await follow(`/v1/jobs/${jobId}/events`, onEvent); } catch (_) { /* the server went away: try again */ }
    if (!FINISHED.has(state.job.status)) await new Promise((r) => setTimeout(r, 2000));
  }
}

// elapsed time and ETA move on between events
setInterval(() => { if (state.job && !FINISHED.has(state.job.status) && !document.hidden) renderHead(); }, 1000);

load().then(followJob).catch((error) => {
  $("job-title").textContent = `Job ${jobId}`;
  $("job-error").hidden = false;
  $("job-error").textContent = error.status === 404 ? `Job ${jobId} does not exist.` : error.message;
});
