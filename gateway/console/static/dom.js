// Small DOM helpers: elements are built with h(), never from HTML strings, so nothing the
// gateway or a model sends is ever parsed as markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

const SVG = "http://www.w3.org/2000/svg";

// An SVG element: presentation attributes only (no style attribute: the CSP forbids inline styles).
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export const $ = (id) => document.getElementById(id);

export function clear(el) {
  el.replaceChildren();
  return el;
}

// A notice inside a panel: "info", "warn" or "error".
export function notice(kind, title, ...body) {
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : null },
    h("strong", {}, title), body.length ? h("p", {}, ...body) : null);
}

export function table(columns, rows, caption) {
  return h("div", { class: "table-wrap" },
    h("table", {},
      caption ? h("caption", { class: "sr-only" }, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.class }, c.label)))),
      h("tbody", {}, rows.map((row) =>
        h("tr", {}, columns.map((c) => h("td", { class: c.class, "data-label": c.label }, c.cell(row))))))));
}

export function badge(text, kind = "") {
  return h("span", { class: `badge ${kind}` }, text);
}

export function fmtNumber(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function fmtCost(usd) {
  if (usd === null || usd === undefined) return "–";
  const n = Number(usd);
  return "$" + n.toLocaleString(undefined, { minimumFractionDigits: n < 1 ? 4 : 2, maximumFractionDigits: n < 1 ? 4 : 2 });
}

export function fmtTime(value) {
  if (!value) return "–";
  const d = typeof value === "number" ? new Date(value * (value < 1e12 ? 1000 : 1)) : new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : d.toLocaleString();
}

// The composer under a conversation (#<prefix>-form, -input, -stop, -clear): the form and Enter
// submit (Shift+Enter is a new line), the buttons stop and clear.
export function composer(prefix, { submit, stop, clear: reset }) {
  $(`${prefix}-form`).addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  $(`${prefix}-input`).addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  $(`${prefix}-stop`).addEventListener("click", stop);
  $(`${prefix}-clear`).addEventListener("click", reset);
}

// A status line: setStatus(text, "error") or setStatus("").
export function statusLine(id) {
  return (text, kind = "") => {
    const el = $(id);
    el.textContent = text;
    el.className = `status ${kind}`;
  };
}
