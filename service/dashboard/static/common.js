// What every page shares: the API (with the key this browser keeps), formatting, small DOM helpers.

const KEY_STORE = "cellar.apiKey";

export function apiKey() { return localStorage.getItem(KEY_STORE) || ""; }

export function askKey(why) {
  const key = window.prompt(`${why}\nThe server's API key (CELLAR_API_KEY), kept in this browser:`, apiKey());
  if (key !== null) localStorage.setItem(KEY_STORE, key.trim());
  return key !== null;
}

function headers() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

export class ApiError extends Error {
  constructor(status, detail) { super(`${status}: ${detail}`); this.status = status; this.detail = detail; }
}

async function answer(response) {
  if (response.ok) return response.json();
  let detail = response.statusText;
  try { detail = (await response.json()).detail ?? detail; } catch (_) { /* not JSON */ }
  if (typeof detail !== "string") detail = JSON.stringify(detail);
  throw new ApiError(response.status, detail);
}

/** GET a /v1 path; a 401 asks for the key once and tries again. */
export async function get(path, params) {
  const url = params ? `${path}?${new URLSearchParams(params)}` : path;
  let response = await fetch(url, { headers: headers() });
  if (response.status === 401 && askKey("This server asks for a key to read.")) {
    response = await fetch(url, { headers: headers() });
  }
  return answer(response);
}

/** GET a text answer from a /v1 path, with the key. */
export async function text(path) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) await answer(response);
  return response.text();
}

/** GET a file (a Blob) from a /v1 path, with the key. */
export async function download(path) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) await answer(response);
  return response.blob();
}

/** POST (or another method) to a /v1 path with the key; asks for it when none is kept or the server refuses it. */
export async function post(path, body, method = "POST") {
  if (!apiKey() && !askKey("Changing a job needs the key.")) throw new ApiError(401, "no key given");
  const send = () => fetch(path, {
    method, headers: { ...headers(), "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let response = await send();
  if (response.status === 401 && askKey("The server refused this key.")) response = await send();
  if (response.status === 204) return null;
  return answer(response);
}

/**
 * Follow a server-sent event stream with fetch (EventSource cannot send the key).
 * Calls onEvent(name, data) per event; resolves when the stream ends; reconnects are the caller's.
 */
export async function follow(path, onEvent, signal) {
  const response = await fetch(path, { headers: headers(), signal });
  if (!response.ok) return answer(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message"; const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function fmt(value, digits = 4) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") {
    if (Number.isInteger(value)) return value.toLocaleString("en");
    return Math.abs(value) >= 1000 ? value.toLocaleString("en", { maximumFractionDigits: 1 }) : value.toPrecision(digits);
  }
  return String(value);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  seconds = Math.max(0, Math.round(seconds));
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${s}s` : `${s}s`;
}

export function seconds(iso) { return iso ? Date.parse(iso.endsWith("Z") || iso.includes("+") ? iso : `${iso}Z`) / 1000 : null; }

/** Elapsed seconds and ETA of a job: the pace of its finished trials over what its budget has left. */
export function pace(job, now = Date.now() / 1000) {
  const start = seconds(job.started_at);
  if (start === null) return { elapsed: null, eta: null };
  const end = seconds(job.finished_at) ?? now;
  const elapsed = end - start;
  if (job.finished_at) return { elapsed, eta: 0 };
  const done = job.counts.complete + job.counts.pruned + job.counts.failed;
  const budget = job.spec?.budget ?? {};
  let eta = null;
  if (job.max_trials && done > 0) eta = elapsed / done * Math.max(0, job.max_trials - done);
  if (budget.time_limit_s) eta = Math.min(eta ?? Infinity, Math.max(0, budget.time_limit_s - elapsed));
  return { elapsed, eta };
}

export function stateBadge(state) { return el("span", { class: `state ${state}`, text: state }); }

export function toast(text) {
  const box = document.getElementById("toast");
  box.textContent = text; box.hidden = false;
  clearTimeout(toast.timer); toast.timer = setTimeout(() => { box.hidden = true; }, 4000);
}

export function plot(div, traces, layout = {}) {
  for (const note of div.querySelectorAll(":scope > .empty")) note.remove();  // "no data yet" goes once there is
  const base = { margin: { l: 55, r: 15, t: 10, b: 40 }, hovermode: "closest", showlegend: traces.length > 1,
    legend: { orientation: "h", y: -0.25 }, font: { size: 11 } };
  window.Plotly.react(div, traces, { ...base, ...layout }, { displaylogo: false, responsive: true });
}

export function empty(div, text) {
  if (div.data) window.Plotly.purge(div);
  div.replaceChildren(el("div", { class: "empty", text }));
}

function initChrome() {
  const page = document.body.dataset.page;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === page || (page === "job" && link.dataset.nav === "jobs")) link.classList.add("active");
  }
  const button = document.getElementById("key-button");
  const label = () => { button.textContent = apiKey() ? "key ✓" : "key"; };
  button.addEventListener("click", () => { askKey("Set the key this browser sends."); label(); });
  label();
}
initChrome();
