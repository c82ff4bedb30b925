// The console's entry: sign-in, the views and moving between them (#chat, #agents, ...).

import { ApiError, getJSON, session } from "./api.js";
import { initAgents, loadAgents } from "./agent.js";
import { initChat, loadModels } from "./chat.js";
import { $ } from "./dom.js";
import { showKeys, showPlugins, showRequests, showRoutes, showSpend } from "./admin.js";

const VIEWS = {
  chat: null,
  agents: null,
  routes: showRoutes,
  keys: showKeys,
  spend: showSpend,
  requests: showRequests,
  plugins: showPlugins,
};
const ADMIN = new Set(["routes", "keys", "spend", "requests", "plugins"]);

function show(name) {
  for (const section of document.querySelectorAll("main > .view")) {
    section.hidden = section.id !== `view-${name}`;
  }
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const title = document.querySelector(`#view-${name} h1`);
  document.title = `${title ? title.textContent : "Sign in"} · hookgate console`;
}

function allowed(name) {
  const me = session.me;
  return name in VIEWS && (ADMIN.has(name) ? me.admin : me.playground);
}

function route() {
  if (!session.me) return signInView();
  let name = location.hash.slice(1) || "chat";
  if (!allowed(name)) name = session.me.playground ? "chat" : "routes";
  show(name);
  const load = VIEWS[name];
  if (load) load();
}

function signInView(message) {
  $("nav").hidden = true;
  $("who").hidden = true;
  show("signin");
  const error = $("signin-error");
  error.hidden = !message;
  error.textContent = message || "";
  $("signin-key").focus();
}

// Ask the gateway who the key is; on success the key is kept for this tab.
async function signIn(key) {
  try {
    session.me = await getJSON("/ui/api/whoami", key === null ? {} : { key });
  } catch (err) {
    session.me = null;
    if (err instanceof ApiError && err.status === 401) {
      return signInView(key ? "That key was not accepted." : null);
    }
    return signInView(`The gateway did not answer: ${err.message}`);
  }
  if (key) session.key = key;
  enter();
}

function enter() {
  const me = session.me;
  $("nav").hidden = false;
  for (const el of document.querySelectorAll("[data-admin]")) el.hidden = !me.admin;
  // An admin key of the admin API calls no models: the playground is for model keys.
  for (const el of document.querySelectorAll("[data-playground]")) el.hidden = !me.playground;
  document.querySelector(".nav-sep").hidden = !(me.admin && me.playground);
  $("who").hidden = false;
  $("who-name").textContent = me.auth ? `${me.name}${me.admin && me.playground ? " · admin" : ""}` : "open gateway";
  $("sign-out").hidden = !me.auth;
  if (me.playground) {
    loadModels();
    loadAgents();
  }
  route();
  $("main").focus();
}

function signOut() {
  session.key = null;
  session.me = null;
  $("signin-key").value = "";
  history.replaceState(null, "", "#");
  signInView();
}

document.addEventListener("DOMContentLoaded", () => {
  initChat();
  initAgents();
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("signin-key").value.trim();
    if (!key) return signInView("Enter an API key.");
    signIn(key);
  });
  $("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  start();
});

// A key kept from earlier in this tab signs in again; an open gateway lets anyone in; else
// the sign-in form.
async function start() {
  if (session.key) return signIn(session.key);
  try {
    const about = await getJSON("/ui/api/gateway");
    if (!about.auth) return signIn(null);
  } catch (err) {
    return signInView(`The gateway did not answer: ${err.message}`);
  }
  signInView();
}
