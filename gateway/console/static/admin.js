// The admin views: routes and target health, plugins, and (when the gateway has the key and
// spend capability) keys, spend and recent requests. Each view reads the gateway's JSON afresh
// when it is shown.

import { call, getJSON, session } from "./api.js";
import { $, badge, clear, fmtCost, fmtNumber, fmtTime, h, notice, svg, table } from "./dom.js";

function loading(root) {
  clear(root).append(h("p", { class: "muted" }, "Loading…"));
}

function failed(root, err) {
  clear(root).append(notice("error", "Could not load this view.", err.message));
}

function notConfigured(root, what, endpoint) {
  clear(root).append(notice("info", `${what} are not configured on this gateway.`,
    "This view shows them once the gateway serves ", h("code", {}, endpoint),
    " (virtual keys and the spend ledger). See the console's documentation."));
}

export const capability = (name) => Boolean(session.me?.capabilities?.[name]);

// --- routes and the health of their targets ---

export async function showRoutes() {
  const root = $("routes-body");
  loading(root);
  try {
    const [routes, health] = await Promise.all([getJSON("/ui/api/routes"), fetchHealth()]);
    clear(root).append(healthSummary(health), ...routesTable(routes.models, health));
  } catch (err) {
    failed(root, err);
  }
}

async function fetchHealth() {
  // /health answers 200 when all is well and 503 when it is not; both carry the JSON.
  const resp = await fetch("/health", { cache: "no-store" });
  try {
    return await resp.json();
  } catch {
    return { status: resp.ok ? "ok" : "unavailable" };
  }
}

function healthSummary(health) {
  const items = [
    ["Gateway", badge(health.status || "unknown", health.status === "ok" ? "ok" : "error")],
    ["Version", health.version || "–"],
  ];
  return h("dl", { class: "panel facts" }, items.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))));
}

// What /health says of a route's targets, in the order the route lists them: a list per model
// name under "models" (one entry a target: its circuit state, failures, requests in flight).
function healthOf(health, route) {
  const entries = health.models?.[route.model];
  return Array.isArray(entries) ? entries : [];
}

const CIRCUIT = {
  closed: ["healthy", "ok"],
  "half-open": ["probing", "warn"],
  half_open: ["probing", "warn"],
  open: ["cooling down", "error"],
};

function circuitBadge(state) {
  if (!state) return h("span", { class: "muted" }, "–");
  const [, kind] = CIRCUIT[state] || [state, "warn"];
  return badge(String(state).replace("_", "-"), kind);
}

function healthBadge(state) {
  if (!state) return h("span", { class: "muted" }, "–");
  const [text, kind] = CIRCUIT[state] || [state, "warn"];
  return badge(text, kind);
}

function latency(t) {
  const ms = t?.latency_ms ?? t?.ttfb_ms;
  return ms === undefined || ms === null ? "–" : `${fmtNumber(ms, ms < 10 ? 1 : 0)} ms`;
}

function routesTable(routes, health) {
  const rows = [];
  for (const route of routes) {
    const targets = route.targets?.length ? route.targets : [route];
    const states = healthOf(health, route);
    targets.forEach((target, i) => rows.push({ route, target, state: states[i], first: i === 0, count: targets.length }));
  }
  const reported = rows.some((r) => r.state);
  const columns = [
    { label: "Model", cell: (r) => (r.first ? h("span", {}, h("code", {}, r.route.model),
      r.count > 1 && r.route.strategy ? h("span", { class: "muted small" }, ` ${r.route.strategy}`) : null) : "") },
    { label: "Target", cell: (r) => h("span", {}, h("code", {}, r.target.backend),
      r.target.kind ? h("span", { class: "muted small" }, ` ${r.target.kind}`) : null,
      r.target.upstream_model ? h("span", { class: "muted" }, ` → ${r.target.upstream_model}`) : null) },
    { label: "Health", cell: (r) => healthBadge(r.state?.state) },
    { label: "Circuit", cell: (r) => (r.state ? h("span", {}, circuitBadge(r.state.state),
      r.state.fails ? h("span", { class: "muted small" }, ` ${r.state.fails} failed`) : null) : circuitBadge(null)) },
    { label: "In flight", class: "num", cell: (r) => (r.state ? fmtNumber(r.state.inflight) : "–") },
    { label: "Latency", class: "num", cell: (r) => latency(r.state) },
  ];
  const out = [h("div", { class: "panel" }, table(columns, rows, "Routes"))];
  if (!reported) {
    out.push(h("p", { class: "muted small" },
      "/health reports no per-target state for these routes (it does for models with several targets)."));
  }
  return out;
}

// --- plugins ---

export async function showPlugins() {
  const root = $("plugins-body");
  loading(root);
  try {
    const { plugins } = await getJSON("/ui/api/plugins");
    const columns = [
      { label: "Plugin", cell: (p) => h("code", {}, p.name) },
      { label: "Version", cell: (p) => p.version || "–" },
      { label: "Distribution", cell: (p) => p.distribution || "–" },
      { label: "State", cell: (p) => badge(p.enabled ? "enabled" : "disabled", p.enabled ? "ok" : "") },
      { label: "Hooks", class: "wide", cell: (p) => p.hooks.map((x) => x.replace(/^gateway_/, "")).join(", ") || "–" },
    ];
    clear(root).append(h("div", { class: "panel" }, table(columns, plugins, "Plugins")));
  } catch (err) {
    failed(root, err);
  }
}

// --- recent requests (the console keeps the latest of each process) ---

export async function showRequests() {
  const root = $("requests-body");
  if (!capability("requests")) return notConfigured(root, "Recent requests", "[console] recent_requests");
  loading(root);
  try {
    const { data } = await getJSON("/ui/api/requests");
    const refresh = h("button", { type: "button", onclick: showRequests }, "Refresh");
    const bar = h("div", { class: "toolbar" }, h("span", { class: "muted small" },
      data.length ? `The latest ${data.length} chat requests this gateway process handled, newest first.` : ""), refresh);
    if (!data.length) {
      clear(root).append(bar, notice("info", "No requests yet.", "Chat requests appear here as they end."));
      return;
    }
    const columns = [
      { label: "Time", cell: (r) => fmtTime(r.time) },
      { label: "Key", cell: (r) => r.key },
      { label: "Model", cell: (r) => h("code", {}, r.model) },
      { label: "Status", cell: (r) => requestStatus(r) },
      { label: "Tokens", class: "num", cell: (r) => `${fmtNumber(r.input_tokens)} / ${fmtNumber(r.output_tokens)}` },
      { label: "Cost", class: "num", cell: (r) => fmtCost(r.cost) },
      { label: "Latency", class: "num", cell: (r) => `${fmtNumber(r.latency_ms)} ms` },
    ];
    clear(root).append(bar, h("div", { class: "panel" }, table(columns, data, "Recent requests")));
  } catch (err) {
    failed(root, err);
  }
}

function requestStatus(r) {
  if (r.status === "success") return badge("ok", "ok");
  if (r.status === "client_gone") return badge("cancelled", "warn");
  const el = badge(r.error ? String(r.error.status) : "error", "error");
  if (r.error) el.title = r.error.message;
  return el;
}

// --- virtual keys, through the admin API ---

const PERIODS = ["day", "month", "total"];

export async function showKeys() {
  const root = $("keys-body");
  if (!capability("keys")) return notConfigured(root, "Virtual keys", "/admin/keys");
  if (!root.dataset.ready) {
    clear(root).append(createKeyForm(), h("div", { id: "key-secret", "aria-live": "polite" }),
      h("div", { class: "toolbar" },
        h("label", { class: "check" }, h("input", { type: "checkbox", id: "keys-revoked", onchange: listKeys }), "Show revoked keys")),
      h("div", { id: "keys-list" }));
    root.dataset.ready = "1";
  }
  await listKeys();
}

function field(id, label, attrs = {}) {
  return h("div", { class: "field" }, h("label", { for: id }, label), h("input", { id, name: id, ...attrs }));
}

function createKeyForm() {
  const form = h("form", { class: "panel form-grid", id: "key-form", "aria-labelledby": "key-form-title", novalidate: true },
    h("h2", { id: "key-form-title", class: "span-all" }, "Create a key"),
    field("key-name", "Name", { required: true, autocomplete: "off" }),
    field("key-team", "Team", { autocomplete: "off", placeholder: "none" }),
    field("key-models", "Models", { autocomplete: "off", placeholder: "all (or: gpt-4o, llama)" }),
    field("key-rpm", "Requests / min", { type: "number", min: "0", step: "1", placeholder: "default" }),
    field("key-tpm", "Tokens / min", { type: "number", min: "0", step: "1", placeholder: "default" }),
    ...PERIODS.map((p) => field(`key-budget-${p}`, `Budget / ${p} (USD)`, { type: "number", min: "0", step: "0.01", placeholder: "none" })),
    field("key-expires", "Expires", { type: "date" }),
    h("div", { class: "span-all actions" }, h("button", { type: "submit", class: "primary" }, "Create key"),
      h("p", { id: "key-form-error", class: "error", role: "alert", hidden: true })));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    createKey();
  });
  return form;
}

function numberOf(id, parse = parseInt) {
  const value = $(id).value.trim();
  return value === "" ? undefined : parse(value, 10);
}

async function createKey() {
  const error = $("key-form-error");
  error.hidden = true;
  const name = $("key-name").value.trim();
  if (!name) {
    error.textContent = "A key needs a name.";
    error.hidden = false;
    $("key-name").focus();
    return;
  }
  const body = { name };
  const team = $("key-team").value.trim();
  if (team) body.team = team;
  const models = $("key-models").value.split(",").map((m) => m.trim()).filter(Boolean);
  if (models.length) body.models = models;
  for (const limit of ["rpm", "tpm"]) {
    const n = numberOf(`key-${limit}`);
    if (n !== undefined) body[limit] = n;
  }
  const budget = {};
  for (const p of PERIODS) {
    const n = numberOf(`key-budget-${p}`, parseFloat);
    if (n !== undefined) budget[p] = n;
  }
  if (Object.keys(budget).length) body.budget = budget;
  const expires = $("key-expires").value;
  if (expires) body.expires_at = `${expires}T00:00:00Z`;
  try {
    const resp = await call("POST", "/admin/keys", { body });
    const { key, secret } = await resp.json();
    showSecret(key, secret);
    $("key-form").reset();
    await listKeys();
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  }
}

// The secret is shown this once: the gateway keeps only its digest.
function showSecret(key, secret) {
  const box = h("code", { class: "secret", id: "new-secret" }, secret);
  const copy = h("button", { type: "button", onclick: async () => {
    try {
      await navigator.clipboard.writeText(secret);
      copy.textContent = "Copied";
    } catch {
      const range = document.createRange();
      range.selectNodeContents(box);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
    }
  } }, "Copy");
  const done = h("button", { type: "button", class: "quiet", onclick: () => clear($("key-secret")) }, "Done");
  clear($("key-secret")).append(h("div", { class: "notice ok secret-box", role: "status" },
    h("strong", {}, `Key “${key.name}” created. Copy its secret now: it is not shown again.`),
    h("div", { class: "secret-row" }, box, copy, done)));
  copy.focus();
}

async function listKeys() {
  const list = $("keys-list");
  const revoked = $("keys-revoked")?.checked;
  try {
    const { data } = await getJSON(`/admin/keys${revoked ? "?revoked=true" : ""}`);
    if (!data.length) {
      clear(list).append(notice("info", "No keys yet.", "Create one above; keys from the configuration file are not listed here."));
      return;
    }
    const columns = [
      { label: "Name", cell: (k) => h("span", {}, h("strong", {}, k.name), h("br"), h("code", { class: "muted small" }, k.hint)) },
      { label: "Team", cell: (k) => k.team || "–" },
      { label: "Models", cell: (k) => (k.models ? k.models.join(", ") : "all") },
      { label: "Limits", cell: (k) => limits(k) },
      { label: "Budget", cell: (k) => budget(k.budget) },
      { label: "Expires", cell: (k) => (k.expires_at ? fmtTime(k.expires_at) : "never") },
      { label: "State", cell: (k) => (k.revoked_at ? badge("revoked", "error") : badge("active", "ok")) },
      { label: "", class: "num", cell: (k) => (k.revoked_at ? "" : h("button", {
        type: "button", class: "danger", "aria-label": `Revoke ${k.name}`, onclick: () => revoke(k),
      }, "Revoke")) },
    ];
    clear(list).append(h("div", { class: "panel" }, table(columns, data, "Keys")));
  } catch (err) {
    clear(list).append(notice("error", "Could not list the keys.", err.message));
  }
}

function limits(k) {
  const parts = [];
  if (k.rpm !== null && k.rpm !== undefined) parts.push(`${fmtNumber(k.rpm)} req/min`);
  if (k.tpm !== null && k.tpm !== undefined) parts.push(`${fmtNumber(k.tpm)} tok/min`);
  return parts.join(", ") || "default";
}

function budget(b) {
  const parts = PERIODS.filter((p) => b && b[p] !== null && b[p] !== undefined).map((p) => `${fmtCost(b[p])}/${p}`);
  return parts.join(", ") || "none";
}

async function revoke(key) {
  if (!window.confirm(`Revoke the key “${key.name}”? It stops working at once, on every instance.`)) return;
  try {
    await call("POST", `/admin/keys/${encodeURIComponent(key.id)}/revoke`);
  } catch (err) {
    clear($("key-secret")).append(notice("error", `Could not revoke “${key.name}”.`, err.message));
  }
  await listKeys();
}

// --- spend, through the admin API ---

const DAY = 86400000;

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

export async function showSpend() {
  const root = $("spend-body");
  if (!capability("spend")) return notConfigured(root, "Spend records", "/admin/spend");
  if (!root.dataset.ready) {
    const range = h("select", { id: "spend-range", onchange: loadSpend },
      h("option", { value: "7" }, "Last 7 days"), h("option", { value: "30", selected: true }, "Last 30 days"),
      h("option", { value: "90" }, "Last 90 days"));
    clear(root).append(h("div", { class: "toolbar" }, h("div", { class: "inline-field" }, h("label", { for: "spend-range", class: "inline" }, "Period"), range)),
      h("div", { id: "spend-content", class: "stack" }));
    root.dataset.ready = "1";
  }
  await loadSpend();
}

async function loadSpend() {
  const content = $("spend-content");
  const days = parseInt($("spend-range").value, 10);
  const since = isoDay(new Date(Date.now() - (days - 1) * DAY));
  loading(content);
  try {
    const q = (group) => getJSON(`/admin/spend?group_by=${group}&since=${since}`).then((r) => r.data);
    const [byDay, byKey, byTeam, byModel, keys] = await Promise.all([
      q("day"), q("key"), q("team"), q("model"),
      capability("keys") ? getJSON("/admin/keys?revoked=true").then((r) => r.data).catch(() => []) : [],
    ]);
    const names = new Map(keys.map((k) => [k.id, k.name]));
    const total = byDay.reduce((acc, r) => ({
      requests: acc.requests + r.requests, cost: acc.cost + r.cost,
      tokens: acc.tokens + r.input_tokens + r.output_tokens, failed: acc.failed + r.failed,
    }), { requests: 0, cost: 0, tokens: 0, failed: 0 });
    clear(content).append(
      h("dl", { class: "panel facts" },
        [["Cost", fmtCost(total.cost)], ["Requests", fmtNumber(total.requests)], ["Tokens", fmtNumber(total.tokens)],
          ["Failed", fmtNumber(total.failed)]].map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v)))),
      h("div", { class: "panel chart-panel" }, h("h2", {}, "Cost by day"), chart(byDay, days, content.clientWidth - 30)),
      h("div", { class: "grid-3" },
        breakdown("By key", byKey, "key", (id) => (id ? names.get(id) || id : "configuration keys")),
        breakdown("By team", byTeam, "team", (id) => id || "no team"),
        breakdown("By model", byModel, "model", (id) => id)));
  } catch (err) {
    failed(content, err);
  }
}

function breakdown(title, rows, group, label) {
  const sorted = [...rows].sort((a, b) => b.cost - a.cost);
  const columns = [
    { label: group[0].toUpperCase() + group.slice(1), cell: (r) => label(r[group]) },
    { label: "Requests", class: "num", cell: (r) => fmtNumber(r.requests) },
    { label: "Cost", class: "num", cell: (r) => fmtCost(r.cost) },
  ];
  return h("section", { class: "panel", "aria-label": `Spend ${title.toLowerCase()}` },
    h("h2", { class: "panel-title" }, title),
    sorted.length ? table(columns, sorted, `Spend ${title.toLowerCase()}`) : h("p", { class: "muted pad" }, "Nothing spent."));
}

// A bar a day for the period, drawn in SVG (no library): height is cost, the title says it all.
function chart(rows, days, available) {
  const byDay = new Map(rows.map((r) => [String(r.day).slice(0, 10), r]));
  const bars = [];
  for (let i = days - 1; i >= 0; i -= 1) {
    const day = isoDay(new Date(Date.now() - i * DAY));
    bars.push({ day, row: byDay.get(day) });
  }
  const max = Math.max(...bars.map((b) => b.row?.cost || 0), 0);
  // Drawn at the width it is shown at, so its text stays the page's size.
  const width = Math.max(300, Math.min(available || 720, 1200));
  const height = 220;
  const pad = { top: 12, right: 8, bottom: 26, left: 56 };
  const inner = { w: width - pad.left - pad.right, h: height - pad.top - pad.bottom };
  const step = inner.w / bars.length;
  const top = max > 0 ? niceCeil(max) : 1;
  const y = (v) => pad.top + inner.h - (v / top) * inner.h;
  const parts = [];
  for (const frac of [0, 0.5, 1]) {
    const v = top * frac;
    parts.push(svg("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: pad.left - 8, y: y(v) + 4, "text-anchor": "end", class: "axis" }, fmtCost(v)));
  }
  bars.forEach((b, i) => {
    const cost = b.row?.cost || 0;
    const x = pad.left + i * step + step * 0.15;
    const barH = Math.max(cost > 0 ? 2 : 0, inner.h - (y(cost) - pad.top));
    parts.push(svg("rect", { x, y: pad.top + inner.h - barH, width: step * 0.7, height: barH, rx: 2, class: "bar" },
      svg("title", {}, `${b.day}: ${fmtCost(cost)}, ${fmtNumber(b.row?.requests || 0)} requests`)));
    // Day labels about 60 px apart, counted back from today (always labelled).
    const every = Math.ceil(bars.length / Math.max(2, Math.floor(inner.w / 60)));
    if ((bars.length - 1 - i) % every === 0) {
      const last = i === bars.length - 1;  // kept inside the right edge
      parts.push(svg("text", { x: last ? x + step * 0.7 : x + step * 0.35, y: height - 8,
        "text-anchor": last ? "end" : "middle", class: "axis" }, b.day.slice(5)));
    }
  });
  const summary = bars.filter((b) => b.row).map((b) => `${b.day}: ${fmtCost(b.row.cost)}`).join("; ");
  return svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
    "aria-label": `Cost by day. ${summary || "Nothing spent in this period."}` }, ...parts);
}

function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((n) => n >= v);
}
