// The admin views: routes and target health, plugins, and (when the gateway has the key and
// spend capability) keys, spend and recent requests. Each view reads the gateway's JSON afresh
// when it is shown.

import { getJSON, session } from "./api.js";
import { $, badge, clear, fmtNumber, h, notice, table } from "./dom.js";

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

function stateBadge(state) {
  if (!state) return h("span", { class: "muted" }, "–");
  const s = String(state).toLowerCase();
  const kind = ["ok", "closed", "healthy", "up"].includes(s) ? "ok"
    : ["half_open", "half-open", "probing", "degraded"].includes(s) ? "warn" : "error";
  return badge(s.replace("_", " "), kind);
}

function healthSummary(health) {
  const items = [
    ["Gateway", stateBadge(health.status)],
    ["Version", health.version || "–"],
  ];
  return h("dl", { class: "panel facts" }, items.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))));
}

// The targets /health reports for a route, in whichever of its shapes: a list of targets with
// the model (or backend) each serves, or a mapping by model name.
function targetsOf(health, route) {
  const all = health.targets || health.routes || health.models;
  if (!all) return [];
  if (Array.isArray(all)) {
    return all.filter((t) => t.model === route.model || (!t.model && t.backend === route.backend));
  }
  const entry = all[route.model] || all[route.backend];
  if (!entry) return [];
  if (Array.isArray(entry)) return entry;
  if (Array.isArray(entry.targets)) return entry.targets;
  return [entry];
}

function latency(target) {
  const ms = target.latency_ms ?? target.ttfb_ms ?? target.latency;
  return ms === undefined || ms === null ? "–" : `${fmtNumber(ms, ms < 10 ? 1 : 0)} ms`;
}

function routesTable(routes, health) {
  const rows = [];
  for (const route of routes) {
    const targets = targetsOf(health, route);
    if (!targets.length) {
      rows.push({ route, target: null, first: true });
      continue;
    }
    targets.forEach((target, i) => rows.push({ route, target, first: i === 0 }));
  }
  const perTarget = rows.some((r) => r.target);
  const columns = [
    { label: "Model", cell: (r) => (r.first ? h("code", {}, r.route.model) : "") },
    { label: "Target", cell: (r) => {
      const backend = r.target?.backend || r.route.backend;
      const upstream = r.target?.upstream_model || r.route.upstream_model;
      return h("span", {}, h("code", {}, backend), r.route.kind && !r.target ? h("span", { class: "muted" }, ` ${r.route.kind}`) : null,
        upstream ? h("span", { class: "muted" }, ` → ${upstream}`) : null);
    } },
    { label: "Health", cell: (r) => stateBadge(r.target?.health ?? r.target?.status ?? (r.target?.healthy === undefined ? null : r.target.healthy ? "healthy" : "unhealthy")) },
    { label: "Circuit", cell: (r) => stateBadge(r.target?.circuit ?? r.target?.state) },
    { label: "Latency", class: "num", cell: (r) => (r.target ? latency(r.target) : "–") },
  ];
  const out = [h("div", { class: "panel" }, table(columns, rows, "Routes"))];
  if (!perTarget) {
    out.push(h("p", { class: "muted small" },
      "This gateway's /health reports no per-target state: health, circuit and latency appear here when it does."));
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

// --- keys, spend and requests: from the admin API when the gateway has it ---

export async function showKeys() {
  const root = $("keys-body");
  if (!capability("keys")) return notConfigured(root, "Virtual keys", "/admin/keys");
  loading(root);
}

export async function showSpend() {
  const root = $("spend-body");
  if (!capability("spend")) return notConfigured(root, "Spend records", "/admin/spend");
  loading(root);
}

export async function showRequests() {
  const root = $("requests-body");
  if (!capability("requests")) return notConfigured(root, "Request logs", "/admin/requests");
  loading(root);
}
