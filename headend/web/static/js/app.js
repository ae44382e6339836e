// The shell: log in, the navigation a role may use, and a hash router that loads each page module.
//
// A page module exports `render(view, ctx)`; it fills `view` (the <main>) and may return a function
// that stops what it started (polling) when the operator leaves the page. ctx: {api, me, can(p),
// params (from the route), query (URLSearchParams after "?" in the hash), go(hash)}.

import { api, ApiError } from "./api.js";
import { clear, errorBox, h } from "./ui.js";

// route pattern, page module, title, the permission it needs, shown in the navigation
const ROUTES = [
  ["overview", "overview", "Overview", "read", true],
  ["meters", "meters", "Meters", "read", true],
  ["meters/:id", "meter", "Meter", "read", false],
  ["vend", "vend", "Vend", "vend", true],
  ["vends/:id", "vend", "Vend", "read", false],
  ["alarms", "alarms", "Alarms", "read", true],
  ["tariffs", "tariffs", "Tariffs", "read", true],
  ["tariffs/:id", "tariff", "Tariff", "read", false],
  ["gateways", "gateways", "Gateways", "read", true],
  ["gateways/:id", "gateway", "Gateway", "read", false],
  ["keys", "keys", "Key management", "keys", true],
  ["admin", "admin", "Administration", "admin", true],
];

const state = { me: null, stop: null };
const view = document.getElementById("view");
const nav = document.getElementById("nav");
const header = document.querySelector("header.top");

function can(permission) {
  return Boolean(state.me && state.me.permissions.includes(permission));
}

function match(hash) {
  const [path, search = ""] = hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  for (const [pattern, module, title, permission] of ROUTES) {
    const want = pattern.split("/");
    if (want.length !== parts.length) continue;
    const params = {};
    if (want.every((p, i) => (p.startsWith(":") ? (params[p.slice(1)] = decodeURIComponent(parts[i])) : p === parts[i]))) {
      return { pattern, module, title, permission, params, query: new URLSearchParams(search) };
    }
  }
  return null;
}

function drawNav(current) {
  const items = ROUTES.filter(([, , , permission, shown]) => shown && can(permission));
  const top = current ? current.pattern.split("/")[0] : "";
  clear(nav, h("ul", {}, items.map(([pattern, , title]) =>
    h("li", {}, h("a", { href: `#/${pattern}`, "aria-current": pattern === top ? "page" : false }, title)))));
}

async function show() {
  if (state.stop) {
    state.stop();
    state.stop = null;
  }
  if (!state.me) return;
  const route = match(location.hash) || match("#/overview");
  drawNav(route);
  if (!can(route.permission)) {
    clear(view, h("h1", {}, route.title), h("p", { role: "alert" },
      `Your role (${state.me.role}) may not use this page.`));
    return;
  }
  document.title = `${route.title} · AMR head-end`;
  clear(view, h("p", { class: "loading" }, "Loading…"));
  try {
    const page = await import(`./pages/${route.module}.js`);
    clear(view);
    const ctx = { api, me: state.me, can, params: route.params, query: route.query,
      go: (hash) => { location.hash = hash; } };
    const stop = await page.render(view, ctx);
    if (typeof stop === "function") state.stop = stop;
    const heading = view.querySelector("h1");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
  } catch (error) {
    clear(view, h("h1", {}, route.title), errorBox(error));
  }
}

function loginForm(message = null) {
  state.me = null;
  header.hidden = true;
  nav.hidden = true;
  const username = h("input", { id: "username", name: "username", autocomplete: "username", required: true });
  const password = h("input", { id: "password", name: "password", type: "password",
    autocomplete: "current-password", required: true });
  const problem = h("div", {}, message && h("p", { role: "alert" }, message));
  const button = h("button", { type: "submit" }, "Log in");
  const form = h("form", { class: "card login", "aria-labelledby": "login-title", onsubmit: async (event) => {
    event.preventDefault();
    button.disabled = true;
    clear(problem);
    try {
      await api.post("/login", { username: username.value, password: password.value });
      await start();
    } catch (error) {
      clear(problem, errorBox(error instanceof ApiError && error.status === 401
        ? new Error("invalid username or password") : error));
      password.value = "";
      password.focus();
    } finally {
      button.disabled = false;
    }
  } },
  h("h1", { id: "login-title" }, "Log in to the head-end"),
  h("label", { for: "username" }, "Username", username),
  h("label", { for: "password" }, "Password", password),
  problem, button);
  clear(view, form);
  document.title = "Log in · AMR head-end";
  username.focus();
}

async function start() {
  try {
    state.me = await api.get("/me");
  } catch (error) {
    loginForm(error instanceof ApiError && error.status === 401 ? null : error.message);
    return;
  }
  header.hidden = false;
  nav.hidden = false;
  document.getElementById("who").textContent = `${state.me.name} (${state.me.role})`;
  if (!location.hash || location.hash === "#/" || location.hash === "#") {
    history.replaceState(null, "", "#/overview");
  }
  await show();
}

document.getElementById("logout").addEventListener("click", async () => {
  try { await api.post("/logout"); } finally {
    history.replaceState(null, "", "#/overview");
    loginForm();
  }
});
window.addEventListener("hashchange", show);
window.addEventListener("amr:unauthorized", () => {
  if (state.me) loginForm("Your session has ended; log in again.");
});
start();
