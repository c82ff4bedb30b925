// The chat playground: a conversation streamed over the OpenAI protocol, token by token.
// Stop aborts the fetch; the gateway sees its client go and cancels the upstream request.

import { call, getJSON, session, sse } from "./api.js";
import { $, clear, composer, h, statusLine } from "./dom.js";
import { chatSnippets, codePanel } from "./snippets.js";

const history = [];
let running = null;
let code;

export function initChat() {
  code = codePanel($("chat-code"), "The request");
  composer("chat", {
    submit: send,
    stop,
    clear: () => {
      history.length = 0;
      clear($("chat-log"));
      $("chat-empty").hidden = false;
      status("");
      refresh();
    },
  });
  for (const id of ["chat-model", "chat-system", "chat-temperature", "chat-max-tokens", "chat-input"]) {
    $(id).addEventListener("input", refresh);
  }
}

// Fill the model list from /v1/models (agents are offered on their own view).
export async function loadModels() {
  const select = clear($("chat-model"));
  const agents = new Set((session.me?.agents || []).map((a) => a.name));
  try {
    const { data } = await getJSON("/v1/models");
    const models = data.map((m) => m.id).filter((id) => !agents.has(id));
    for (const id of models) select.append(h("option", { value: id }, id));
    if (!models.length) status("This key may use no model.", "error");
  } catch (err) {
    status(`Could not list the models: ${err.message}`, "error");
  }
  refresh();
}

function request(text) {
  const messages = [];
  const system = $("chat-system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...history, { role: "user", content: text });
  const body = { model: $("chat-model").value, messages };
  const temperature = parseFloat($("chat-temperature").value);
  if (!Number.isNaN(temperature)) body.temperature = temperature;
  const maxTokens = parseInt($("chat-max-tokens").value, 10);
  if (!Number.isNaN(maxTokens)) body.max_tokens = maxTokens;
  body.stream = true;
  body.stream_options = { include_usage: true };
  return body;
}

function refresh() {
  const text = $("chat-input").value.trim() || "Hello!";
  code.update(chatSnippets(location.origin, request(text), session.me?.auth));
}

function bubble(role, text) {
  $("chat-empty").hidden = true;
  const body = h("div", { class: "bubble-text" }, text);
  const item = h("li", { class: `msg ${role}` }, h("span", { class: "who-label" }, role === "user" ? "You" : "Assistant"), body);
  $("chat-log").append(item);
  item.scrollIntoView({ block: "end" });
  return { item, body };
}

const status = statusLine("chat-status");

function busy(on) {
  $("chat-send").disabled = on;
  $("chat-stop").disabled = !on;
  $("chat-model").disabled = on;
}

async function send() {
  const text = $("chat-input").value.trim();
  if (!text || running) return;
  if (!$("chat-model").value) {
    status("Pick a model first.", "error");
    return;
  }
  const body = request(text);
  $("chat-input").value = "";
  bubble("user", text);
  const answer = bubble("assistant", "");
  answer.item.classList.add("streaming");
  const controller = new AbortController();
  running = controller;
  busy(true);
  status("Waiting for the first token…");
  const started = performance.now();
  let content = "";
  let usage = null;
  let outcome = "done";
  try {
    const resp = await call("POST", "/v1/chat/completions", { body, signal: controller.signal, accept: "text/event-stream" });
    const served = resp.headers.get("x-hookgate-backend");
    status("Streaming…");
    for await (const frame of sse(resp)) {
      if (frame.data === "[DONE]") break;
      const chunk = JSON.parse(frame.data);
      if (chunk.error) throw new Error(chunk.error.message || "the stream failed");
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) {
        content += delta;
        answer.body.textContent = content;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const tokens = usage ? ` · ${usage.prompt_tokens} tokens in, ${usage.completion_tokens} out` : "";
    status(`Done in ${seconds} s${tokens}${served ? ` · ${served}` : ""}`);
  } catch (err) {
    if (controller.signal.aborted) {
      outcome = "stopped";
      status("Stopped: the request was cancelled.");
    } else {
      outcome = "failed";
      answer.item.classList.add("failed");
      status(err.message, "error");
    }
  } finally {
    answer.item.classList.remove("streaming");
    if (outcome === "stopped") answer.item.append(h("span", { class: "badge warn" }, "stopped"));
    history.push({ role: "user", content: text });
    if (content) history.push({ role: "assistant", content });
    running = null;
    busy(false);
    refresh();
    $("chat-input").focus();
  }
}

function stop() {
  if (running) running.abort();
}
