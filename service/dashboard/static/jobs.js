// Jobs (/): every job with its state, progress, best value, elapsed time and ETA, refreshed live.
import { duration, el, fmt, get, pace, seconds, stateBadge, toast } from "./common.js";

const body = document.querySelector("#jobs tbody");
const filter = document.getElementById("state-filter");
const REFRESH_MS = 2000;

function best(job) {
  if (job.best_trial) return `${fmt(job.best_trial.values[0])} (#${job.best_trial.number})`;
  if (job.best_trials.length) return `${job.best_trials.length} on the front`;
  return "–";
}

function progress(job) {
  const done = job.counts.complete + job.counts.pruned + job.counts.failed;
  const total = job.max_trials ?? job.counts.total;
  const share = total ? Math.min(1, done / total) : 0;
  const running = job.counts.running ? `, ${job.counts.running} running` : "";
  return el("td", {}, el("span", { class: "bar-cell" }, el("span", { style: `width:${(share * 100).toFixed(1)}%` })),
    `${done}/${job.max_trials ?? "∞"}${running}`);
}

function row(job) {
  const { elapsed, eta } = pace(job);
  const objectives = (job.spec.objectives ?? []).map((o) => `${o.direction === "maximize" ? "max" : "min"} ${o.metric}`).join(", ");
  return el("tr", { "data-job": job.id },
    el("td", { class: "num" }, el("a", { href: `/jobs/${job.id}`, text: job.id })),
    el("td", {}, el("a", { href: `/jobs/${job.id}`, text: job.name }),
      job.simulated_on ? el("span", { class: "tag", title: `simulated on results table ${job.simulated_on}`, text: "simulated" }) : null),
    el("td", {}, stateBadge(job.status)),
    el("td", { text: job.search_space }),
    el("td", { text: job.dataset }),
    progress(job),
    el("td", { title: objectives, text: best(job) }),
    el("td", { class: "num", text: duration(elapsed) }),
    el("td", { class: "num", text: job.finished_at ? "done" : duration(eta) }),
    el("td", { text: new Date(seconds(job.created_at) * 1000).toLocaleString() }));
}

async function refresh() {
  try {
    const params = { limit: 200 };
    if (filter.value) params.status = filter.value;
    const jobs = await get("/v1/jobs", params);
    body.replaceChildren(...jobs.data.map(row));
    document.getElementById("jobs-empty").hidden = jobs.data.length > 0;
    document.getElementById("jobs-updated").textContent =
      `${jobs.count} job${jobs.count === 1 ? "" : "s"} · updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    toast(`Could not read the jobs: ${error.message}`);
  }
}

const models = document.querySelector("#models tbody");
const modelFilter = document.getElementById("model-filter");

function modelRow(m) {
  return el("tr", { "data-run": m.run_id },
    el("td", { class: "num", text: m.run_id }),
    el("td", { text: m.name, title: m.nn_id }),
    el("td", { text: `${m.dataset} (${m.task})` }),
    el("td", {}, stateBadge(m.status === "ok" ? "complete" : "failed")),
    el("td", { class: "failure", title: m.failure?.message ?? "", text: m.failure ? `${m.failure.kind}: ${m.failure.message.slice(0, 80)}` : "" }),
    el("td", { class: "num", text: fmt(m.accuracy) }),
    el("td", { class: "num", text: fmt(m.params) }),
    el("td", { class: "num", text: m.epochs.length }),
    el("td", { class: "num", text: fmt(m.code_quality, 2) }));
}

async function refreshModels() {
  const params = { limit: 100 };
  const wanted = modelFilter.value;
  if (wanted === "ok" || wanted === "failed") params.status = wanted;
  else if (wanted) params.failure = wanted;
  try {
    const answer = await get("/v1/models", params);
    models.replaceChildren(...answer.data.map(modelRow));
    document.getElementById("models-count").textContent = `${answer.count} stored`;
  } catch (error) {
    toast(`Could not read the submitted models: ${error.message}`);
  }
}
modelFilter.addEventListener("change", refreshModels);
refreshModels();

filter.addEventListener("change", () => { location.hash = filter.value ? `state=${filter.value}` : ""; refresh(); });
const fromHash = new URLSearchParams(location.hash.slice(1)).get("state");
if (fromHash) filter.value = fromHash;
refresh();
setInterval(() => { if (!document.hidden) { refresh(); refreshModels(); } }, REFRESH_MS);
