// Data (/data): LEMUR's data() with its filters, the rows as a table, CSV download.
import { el, fmt, get, toast } from "./common.js";

const form = document.getElementById("query");
const SHOWN = ["nn", "task", "dataset", "metric", "epoch", "accuracy", "duration", "prm", "job_id", "run_id", "search_space", "arch", "id"];
const CSV_COLUMNS = ["id", "task", "dataset", "metric", "metric_code", "metric_id", "nn", "nn_code", "nn_id", "epoch",
  "accuracy", "duration", "prm_id", "transform_code", "transform_id", "prm", "run_id", "job_id", "seed", "split",
  "created_at", "search_space", "arch"];
let rows = [];

function params() {
  const data = new FormData(form), query = new URLSearchParams({ codes: "separate" });
  for (const key of ["task", "dataset", "metric", "nn", "nn_prefixes"]) {
    for (const value of String(data.get(key) ?? "").split(",").map((v) => v.trim()).filter(Boolean)) query.append(key, value);
  }
  for (const key of ["epoch", "max_rows"]) if (data.get(key)) query.set(key, data.get(key));
  for (const key of ["only_best_accuracy", "unique_nn"]) if (data.get(key)) query.set(key, "true");
  return query;
}

function cell(row, key) {
  const value = row[key];
  if (key === "prm") return el("td", { class: "prm", title: JSON.stringify(value), text: Object.entries(value).map(([k, v]) => `${k}=${v}`).join(" ").slice(0, 60) });
  if (key === "duration") return el("td", { class: "num", text: value === null ? "–" : `${(value / 1e9).toFixed(2)} s` });
  if (key === "job_id") return el("td", { class: "num" }, el("a", { href: `/jobs/${value}`, text: value }));
  if (key === "id") return el("td", { class: "muted", text: value.slice(0, 10) });
  return el("td", { class: typeof value === "number" ? "num" : null, title: typeof value === "string" && value.length > 50 ? value : null,
    text: typeof value === "string" && value.length > 50 ? `${value.slice(0, 50)}…` : fmt(value) });
}

async function query(event) {
  event?.preventDefault();
  const search = params();
  history.replaceState(null, "", `#${search}`);
  try {
    const answer = await get("/v1/data", search);
    const codes = answer.codes ?? {};
    rows = answer.data.map((r) => ({ ...r, nn_code: codes[r.nn_id] ?? r.nn_code, metric_code: codes[r.metric_id] ?? r.metric_code,
      transform_code: codes[r.transform_id] ?? r.transform_code }));
    document.querySelector("#rows thead tr").replaceChildren(...SHOWN.map((k) => el("th", { text: k })));
    document.querySelector("#rows tbody").replaceChildren(...rows.map((r) => el("tr", {}, ...SHOWN.map((k) => cell(r, k)))));
    document.getElementById("data-count").textContent = `${rows.length.toLocaleString("en")} rows${answer.next_offset !== null ? " (more match: raise max rows)" : ""}`;
    document.getElementById("csv").disabled = rows.length === 0;
  } catch (error) {
    document.getElementById("data-count").textContent = "";
    toast(`Query refused: ${error.detail ?? error.message}`);
  }
}

function csvField(value) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "object" ? JSON.stringify(value) : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

document.getElementById("csv").addEventListener("click", () => {
  const lines = [CSV_COLUMNS.join(","), ...rows.map((r) => CSV_COLUMNS.map((k) => csvField(r[k])).join(","))];
  const link = el("a", { href: URL.createObjectURL(new Blob([`${lines.join("\r\n")}\r\n`], { type: "text/csv" })), download: "cellar-data.csv" });
  document.body.append(link); link.click(); link.remove();
});

form.addEventListener("submit", query);
// a link to /data#nn=AlexNet&max_rows=100 fills the form and runs the query
const initial = new URLSearchParams(location.hash.slice(1));
for (const [key, value] of initial) {
  const input = form.elements.namedItem(key);
  if (!input) continue;
  if (input.type === "checkbox") input.checked = value === "true";
  else input.value = input.value && ["task", "dataset", "metric", "nn", "nn_prefixes"].includes(key) ? `${input.value},${value}` : value;
}
query();
