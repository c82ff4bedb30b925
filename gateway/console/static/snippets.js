// The exact request the page is about to send, as curl, Python and TypeScript to copy. The key
// is never written out: the snippets read it from $HOOKGATE_API_KEY.

import { h, clear } from "./dom.js";

const LANGS = [
  ["curl", "curl"],
  ["python", "Python"],
  ["typescript", "TypeScript"],
];

// A panel with one tab per language; update(code) shows new snippets and keeps the chosen tab.
export function codePanel(root, title) {
  let current = "curl";
  let code = { curl: "", python: "", typescript: "" };
  const tabs = {};
  const pre = h("code", { id: `${root.id}-text` });
  const copy = h("button", { type: "button", class: "quiet copy", onclick: copyCode }, "Copy");
  const said = h("span", { class: "muted small", role: "status" });
  const tablist = h("div", { class: "tabs", role: "tablist", "aria-label": `${title} as code` },
    LANGS.map(([id, label]) => {
      tabs[id] = h("button", {
        type: "button", role: "tab", id: `${root.id}-tab-${id}`, "aria-controls": `${root.id}-pane`,
        onclick: () => select(id), onkeydown: arrows,
      }, label);
      return tabs[id];
    }));
  clear(root).append(
    h("div", { class: "code-head" }, h("h2", {}, title), tablist, copy, said),
    h("pre", { id: `${root.id}-pane`, role: "tabpanel", tabindex: "0" }, pre));

  function select(id) {
    current = id;
    for (const [lang, tab] of Object.entries(tabs)) {
      tab.setAttribute("aria-selected", String(lang === id));
      tab.tabIndex = lang === id ? 0 : -1;
    }
    root.querySelector("[role=tabpanel]").setAttribute("aria-labelledby", `${root.id}-tab-${id}`);
    pre.textContent = code[id];
    pre.dataset.lang = id;
  }

  function arrows(event) {
    const ids = LANGS.map(([id]) => id);
    const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    const next = ids[(ids.indexOf(current) + step + ids.length) % ids.length];
    select(next);
    tabs[next].focus();
    event.preventDefault();
  }

  async function copyCode() {
    try {
      await navigator.clipboard.writeText(code[current]);
      said.textContent = "Copied.";
    } catch {
      // No clipboard (plain http on another host): select the text for Ctrl+C instead.
      const range = document.createRange();
      range.selectNodeContents(pre);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      said.textContent = "Selected: press Ctrl+C to copy.";
    }
  }

  select(current);
  return {
    update(next) {
      code = next;
      said.textContent = "";
      select(current);
    },
  };
}

// --- rendering values in each language ---

function py(value, indent = 0) {
  const pad = "    ".repeat(indent + 1);
  const end = "    ".repeat(indent);
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return String(value);
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    return `[\n${value.map((v) => pad + py(v, indent + 1)).join(",\n")},\n${end}]`;
  }
  const entries = Object.entries(value);
  if (!entries.length) return "{}";
  return `{\n${entries.map(([k, v]) => `${pad}${JSON.stringify(k)}: ${py(v, indent + 1)}`).join(",\n")},\n${end}}`;
}

function shellQuote(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

function curl(url, body, auth, accept) {
  const lines = [`curl -N ${url}`];
  if (auth) lines.push(`  -H "Authorization: Bearer $HOOKGATE_API_KEY"`);
  lines.push(`  -H "Content-Type: application/json"`);
  if (accept) lines.push(`  -H "Accept: ${accept}"`);
  lines.push(`  -d ${shellQuote(JSON.stringify(body, null, 2))}`);
  return lines.join(" \\\n");
}

function indentLines(text, pad) {
  return text.split("\n").join(`\n${pad}`);
}

// --- chat over the OpenAI protocol ---

export function chatSnippets(origin, body, auth) {
  const base = `${origin}/v1`;
  const key = auth ? `os.environ["HOOKGATE_API_KEY"]` : `"unused"`;
  const args = Object.entries(body)
    .map(([k, v]) => `    ${k}=${indentLines(py(v, 1), "")},`)
    .join("\n");
  const python = [
    "import os",
    "",
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url=${JSON.stringify(base)}, api_key=${key})`,
    "stream = client.chat.completions.create(",
    args,
    ")",
    "for chunk in stream:",
    "    if chunk.choices and chunk.choices[0].delta.content:",
    `        print(chunk.choices[0].delta.content, end="", flush=True)`,
    "print()",
  ].join("\n");
  const typescript = [
    `import OpenAI from "openai";`,
    "",
    "const client = new OpenAI({",
    `  baseURL: ${JSON.stringify(base)},`,
    `  apiKey: ${auth ? "process.env.HOOKGATE_API_KEY" : `"unused"`},`,
    "});",
    `const stream = await client.chat.completions.create(${indentLines(JSON.stringify(body, null, 2), "")});`,
    "for await (const chunk of stream) {",
    `  process.stdout.write(chunk.choices[0]?.delta?.content ?? "");`,
    "}",
  ].join("\n");
  return { curl: curl(`${base}/chat/completions`, body, auth), python, typescript };
}

// --- agent runs over AG-UI ---

export function agentSnippets(origin, agent, body, auth) {
  const url = `${origin}/agui/agents/${encodeURIComponent(agent)}/runs`;
  const python = [
    "import json",
    "import os",
    "",
    "import httpx",
    "",
    `body = ${py(body)}`,
    `headers = {"Accept": "text/event-stream"${auth ? `, "Authorization": "Bearer " + os.environ["HOOKGATE_API_KEY"]` : ""}}`,
    `with httpx.stream("POST", ${JSON.stringify(url)}, json=body, headers=headers, timeout=None) as response:`,
    "    response.raise_for_status()",
    "    for line in response.iter_lines():",
    `        if line.startswith("data: "):`,
    "            event = json.loads(line[6:])",
    `            print(event["type"], event.get("delta") or event.get("toolCallName") or event.get("content") or "")`,
  ].join("\n");
  const init = {
    url,
    threadId: body.threadId,
    initialMessages: body.messages,
  };
  const typescript = [
    `import { HttpAgent } from "@ag-ui/client";`,
    "",
    "const agent = new HttpAgent({",
    `  url: ${JSON.stringify(init.url)},`,
    auth ? "  headers: { Authorization: `Bearer ${process.env.HOOKGATE_API_KEY}` }," : null,
    `  threadId: ${JSON.stringify(init.threadId)},`,
    `  initialMessages: ${indentLines(JSON.stringify(init.initialMessages, null, 2), "  ")},`,
    "});",
    `await agent.runAgent({ runId: ${JSON.stringify(body.runId)} }, {`,
    "  onTextMessageContentEvent: ({ event }) => { process.stdout.write(event.delta); },",
    "  onToolCallStartEvent: ({ event }) => { console.log(`\\n[tool] ${event.toolCallName}`); },",
    "  onToolCallResultEvent: ({ event }) => { console.log(`[result] ${event.content}`); },",
    "});",
  ].filter((line) => line !== null).join("\n");
  return { curl: curl(url, body, auth, "text/event-stream"), python, typescript };
}
