// Agent runs over AG-UI: the run's events drawn as they arrive (each model step, each tool call
// with its arguments and result, the final answer). Stop asks the gateway to cancel the run
// (DELETE /agui/runs/{id}: AG-UI runs outlive their connection), which cancels its upstream
// request; the stream then ends with RUN_FINISHED whose outcome is "cancelled".

import { call, newId, session, sse } from "./api.js";
import { $, badge, clear, composer, h, statusLine } from "./dom.js";
import { agentSnippets, codePanel } from "./snippets.js";

let running = null;
let threadId = newId("thread");
let nextRunId = newId("run");
const history = [];
let code;

export function initAgents() {
  code = codePanel($("agent-code"), "The request");
  composer("agent", {
    submit: run,
    stop,
    clear: () => {
      history.length = 0;
      threadId = newId("thread");
      clear($("agent-log"));
      status("");
      refresh();
    },
  });
  $("agent-name").addEventListener("change", describe);
  $("agent-input").addEventListener("input", refresh);
}

export function loadAgents() {
  const agents = session.me?.agents || [];
  const select = clear($("agent-name"));
  for (const agent of agents) select.append(h("option", { value: agent.name }, agent.name));
  const none = !agents.length;
  $("agent-empty").hidden = !none;
  $("agent-run").disabled = none;
  $("agent-input").disabled = none;
  describe();
}

function describe() {
  const agent = (session.me?.agents || []).find((a) => a.name === $("agent-name").value);
  $("agent-about").textContent = agent?.description || "";
  const tools = clear($("agent-tools"));
  for (const tool of agent?.tools || []) {
    tools.append(h("li", {}, h("code", {}, tool.name), tool.description ? h("span", { class: "muted small" }, tool.description.split("\n")[0]) : null));
  }
  if (agent && !agent.tools.length) tools.append(h("li", { class: "muted small" }, "none"));
  refresh();
}

function request(text) {
  const messages = [...history, { id: newId("msg"), role: "user", content: text }];
  return {
    threadId,
    runId: nextRunId,
    messages,
    tools: [],
    context: [],
    state: {},
    forwardedProps: {},
  };
}

function refresh() {
  const name = $("agent-name").value;
  if (!name) return code.update({ curl: "", python: "", typescript: "" });
  const text = $("agent-input").value.trim() || "Hello!";
  code.update(agentSnippets(location.origin, name, request(text), session.me?.auth));
}

const status = statusLine("agent-status");

function busy(on) {
  $("agent-run").disabled = on;
  $("agent-stop").disabled = !on;
  $("agent-name").disabled = on;
}

function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

// Draws one run's events into the timeline.
class Timeline {
  constructor(log) {
    this.log = log;
    this.texts = new Map();
    this.calls = new Map();
    this.step = 0;
    this.afterResult = true;
    this.lastText = null;
    this.answer = "";
  }

  add(node) {
    this.log.append(node);
    node.scrollIntoView({ block: "nearest" });
    return node;
  }

  maybeStep() {
    if (!this.afterResult) return;
    this.afterResult = false;
    this.step += 1;
    this.add(h("li", { class: "ev step" }, h("span", {}, `Step ${this.step}`)));
  }

  event(ev) {
    switch (ev.type) {
      case "RUN_STARTED":
        this.add(h("li", { class: "ev meta" }, "Run started ", h("code", {}, ev.runId)));
        break;
      case "TEXT_MESSAGE_START": {
        this.maybeStep();
        const body = h("div", { class: "bubble-text" });
        const item = this.add(h("li", { class: "ev msg assistant streaming" }, h("span", { class: "who-label" }, "Assistant"), body));
        this.texts.set(ev.messageId, { item, body, text: "" });
        break;
      }
      case "TEXT_MESSAGE_CONTENT": {
        const t = this.texts.get(ev.messageId);
        if (!t) break;
        t.text += ev.delta;
        t.body.textContent = t.text;
        break;
      }
      case "TEXT_MESSAGE_END": {
        const t = this.texts.get(ev.messageId);
        if (!t) break;
        t.item.classList.remove("streaming");
        t.body.textContent = t.text.trim();  // a model's closing blank lines make no box taller
        this.lastText = t;
        break;
      }
      case "TOOL_CALL_START": {
        this.maybeStep();
        const args = h("pre", { class: "args" });
        const result = h("div", { class: "result" });
        const state = badge("calling", "info");
        const item = this.add(h("li", { class: "ev tool", "data-tool": ev.toolCallName },
          h("div", { class: "tool-head" }, h("span", { class: "tool-icon", "aria-hidden": "true" }, "ƒ"),
            h("span", {}, "Tool call "), h("code", { class: "tool-name" }, ev.toolCallName), state),
          h("div", { class: "tool-part" }, h("span", { class: "part-label" }, "Arguments"), args), result));
        this.calls.set(ev.toolCallId, { item, args, result, state, raw: "" });
        break;
      }
      case "TOOL_CALL_ARGS": {
        const c = this.calls.get(ev.toolCallId);
        if (!c) break;
        c.raw += ev.delta;
        c.args.textContent = c.raw;
        break;
      }
      case "TOOL_CALL_END": {
        const c = this.calls.get(ev.toolCallId);
        if (!c) break;
        c.args.textContent = pretty(c.raw);
        c.state.textContent = "running";
        break;
      }
      case "TOOL_CALL_RESULT": {
        const c = this.calls.get(ev.toolCallId);
        if (!c) break;
        c.state.textContent = "done";
        c.state.className = "badge ok";
        c.result.replaceChildren(h("span", { class: "part-label" }, "Result"), h("pre", { class: "output" }, pretty(String(ev.content))));
        this.afterResult = true;
        break;
      }
      case "REASONING_MESSAGE_START":
        this.reasoning = this.add(h("li", { class: "ev reasoning" }, h("span", { class: "part-label" }, "Thinking"), h("div", {})));
        break;
      case "REASONING_MESSAGE_CONTENT":
        if (this.reasoning) this.reasoning.lastChild.textContent += ev.delta;
        break;
      case "RUN_FINISHED":
        for (const t of this.texts.values()) t.item.classList.remove("streaming");
        if (ev.outcome?.type === "cancelled") {
          this.add(h("li", { class: "ev meta stopped" }, "Run cancelled"));
          return "cancelled";
        }
        if (this.lastText) {
          this.lastText.item.classList.add("final");
          this.lastText.item.querySelector(".who-label").textContent = "Final answer";
          this.answer = this.lastText.text;
        }
        this.add(h("li", { class: "ev meta done" }, "Run finished"));
        return "finished";
      case "RUN_ERROR":
        for (const t of this.texts.values()) t.item.classList.remove("streaming");
        this.add(h("li", { class: "ev meta failed" }, `Run failed: ${ev.message}`));
        return "failed";
      default:
        break;
    }
    return null;
  }
}

async function run() {
  const text = $("agent-input").value.trim();
  const agent = $("agent-name").value;
  if (!text || !agent || running) return;
  const body = request(text);
  nextRunId = newId("run");
  $("agent-input").value = "";
  const log = $("agent-log");
  log.append(h("li", { class: "ev msg user" }, h("span", { class: "who-label" }, "You"), h("div", { class: "bubble-text" }, text)));
  const timeline = new Timeline(log);
  const controller = new AbortController();
  running = { controller, runId: body.runId, stopping: false };
  busy(true);
  status("Starting the run…");
  let end = null;
  try {
    const resp = await call("POST", `/agui/agents/${encodeURIComponent(agent)}/runs`, {
      body, signal: controller.signal, accept: "text/event-stream",
    });
    status("Running…");
    for await (const frame of sse(resp)) {
      end = timeline.event(JSON.parse(frame.data)) || end;
      if (end) break;
    }
    if (end === "finished") status("Finished.");
    else if (end === "cancelled") status("Stopped: the run was cancelled.");
    else if (end === "failed") status("The run failed.", "error");
    else status("The stream ended before the run did.", "error");
  } catch (err) {
    if (controller.signal.aborted) status("Stopped: the run was cancelled.");
    else status(err.message, "error");
  } finally {
    history.push(body.messages.at(-1));
    if (timeline.answer) history.push({ id: newId("msg"), role: "assistant", content: timeline.answer });
    running = null;
    busy(false);
    refresh();
    $("agent-input").focus();
  }
}

async function stop() {
  if (!running || running.stopping) return;
  const current = running;
  current.stopping = true;
  $("agent-stop").disabled = true;
  status("Stopping…");
  try {
    await call("DELETE", `/agui/runs/${encodeURIComponent(current.runId)}`);
  } catch (err) {
    // Already ended, or never started: nothing upstream is left to cancel.
    if (err.status !== 409 && err.status !== 404) status(err.message, "error");
  }
  // The stream now ends with a cancelled RUN_FINISHED; if the connection lingers, drop it.
  setTimeout(() => current.controller.abort(), 5000);
}
