// The gateway's APIs, called with the signed-in key as a bearer header. The key lives in
// sessionStorage only: it goes when the tab closes, and never appears in a URL.

const STORE = "hookgate.console.key";

export const session = {
  get key() { return sessionStorage.getItem(STORE); },
  set key(value) {
    if (value) sessionStorage.setItem(STORE, value);
    else sessionStorage.removeItem(STORE);
  },
  // What /ui/api/whoami said of the key: {name, admin, auth, agents, capabilities}.
  me: null,
};

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function headers(extra = {}) {
  const out = { ...extra };
  const key = session.key;
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

// fetch() with the key; a response that is not 2xx becomes an ApiError with the gateway's message.
export async function call(method, path, { body, signal, accept, key } = {}) {
  const extra = {};
  if (body !== undefined) extra["Content-Type"] = "application/json";
  if (accept) extra.Accept = accept;
  const init = { method, headers: headers(extra), signal, cache: "no-store" };
  if (key !== undefined) init.headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) init.body = JSON.stringify(body);
  const resp = await fetch(path, init);
  if (!resp.ok) throw await errorOf(resp);
  return resp;
}

export async function getJSON(path, options) {
  return (await call("GET", path, options)).json();
}

async function errorOf(resp) {
  let message = `${resp.status} ${resp.statusText}`;
  let code;
  try {
    const body = await resp.json();
    const err = body.error || body;
    if (typeof err === "string") message = err;
    else if (err && err.message) {
      message = err.message;
      code = err.code || err.type;
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(resp.status, message, code);
}

// The frames of a text/event-stream response, as {event, data, id}, as they arrive.
export async function* sse(resp) {
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      if (buf.includes("\r")) buf = buf.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const frame = parseFrame(buf.slice(0, end));
        buf = buf.slice(end + 2);
        if (frame) yield frame;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function parseFrame(block) {
  const frame = { event: "message", data: [], id: null };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") frame.data.push(value);
    else if (name === "event") frame.event = value;
    else if (name === "id") frame.id = value;
  }
  return frame.data.length ? { ...frame, data: frame.data.join("\n") } : null;
}

// crypto.randomUUID() needs a secure context; a console served over plain http on a LAN
// address has none, and getRandomValues() works everywhere.
export function newId(prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
