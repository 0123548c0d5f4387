// The console's shell: sign-in, navigation (hash routes, so no token or state ever lands in a
// URL the server sees) and the view of the moment.

import { call, claims, clearToken, currentToken, setToken } from "./api.js";
import { h, replace } from "./dom.js";
import { evalsView } from "./evals.js";
import { quotasView } from "./quotas.js";
import { taskView } from "./task.js";
import { tasksView } from "./tasks.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const live = document.getElementById("live");
let current = null; // the view's AbortController: leaving a view stops its streams and timers

function announce(text) {
  live.textContent = text;
}

function signInView(problem) {
  const token = h("textarea", { id: "token", rows: "4", spellcheck: "false", autocomplete: "off", required: true, "aria-describedby": "token-help" });
  const keep = h("input", { type: "checkbox", id: "keep", checked: true });
  const error = h("p", { class: "error", role: "alert" }, problem || "");
  const form = h(
    "form",
    { class: "signin", "aria-labelledby": "view-title" },
    h("h2", { id: "view-title", tabindex: "-1" }, "Sign in"),
    h("label", { for: "token" }, "Bearer token"),
    token,
    h("p", { id: "token-help", class: "note" }, "Paste a token from ", h("code", {}, "rlm token"), " or your operator's issuer. It is sent only in the Authorization header of API calls."),
    h("div", { class: "check" }, keep, h("label", { for: "keep" }, "Keep it for this browser tab (session storage)")),
    h("button", { type: "submit" }, "Sign in"),
    error,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const value = token.value.trim().replace(/^Bearer\s+/i, "");
    if (!value) return;
    setToken(value, keep.checked);
    token.value = "";
    try {
      await call("/tasks?limit=1");
    } catch (err) {
      if (err.status === 401) {
        clearToken();
        error.textContent = `The API refused the token: ${err.message}`;
        return;
      }
      // 403: a token without rlm:read (quota-only, say) still signs in.
    }
    location.hash = "#/tasks";
    route();
  });
  replace(main, form);
  nav.hidden = true;
  who.textContent = "";
  token.focus();
}

function route() {
  if (current) current.abort();
  current = new AbortController();
  const ctx = { signal: current.signal, announce };
  if (!currentToken()) {
    signInView();
    return;
  }
  nav.hidden = false;
  const c = claims();
  who.textContent = c.sub ? `Signed in as ${c.sub}${c.org ? ` (${c.org})` : ""}` : "Signed in";
  const hash = location.hash || "#/tasks";
  const [, view, arg] = hash.match(/^#\/([^/]*)\/?(.*)$/) || [];
  for (const a of nav.querySelectorAll("a")) {
    if (a.getAttribute("href") === `#/${view}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (view === "task" && arg) taskView(main, decodeURIComponent(arg), ctx);
  else if (view === "quotas") quotasView(main, ctx);
  else if (view === "evals") evalsView(main, ctx);
  else tasksView(main, ctx);
  const heading = document.getElementById("view-title");
  if (heading) heading.focus({ preventScroll: true });
  document.title = `${heading ? heading.textContent : "Console"} · RLM Hypervisor`;
}

// The skip link moves the focus into the view; following its href ("#main") would change the
// hash route and leave the view.
document.querySelector("a.skip").addEventListener("click", (e) => {
  e.preventDefault();
  main.focus();
});
document.getElementById("signout").addEventListener("click", () => {
  clearToken();
  location.hash = "";
  route();
});
window.addEventListener("hashchange", route);
route();
