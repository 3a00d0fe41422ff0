import { call, get, setCsrf } from "./api.js";
import { h, show, errorBox } from "./dom.js";
import { closeEvents, forgetListeners } from "./events.js";
import { vmList } from "./vms.js";
import { vmPage } from "./vm.js";
import { createPage } from "./create.js";
import { hostPage } from "./host.js";
import { fleetPage } from "./fleet.js";

// The page's shell: sign-in, the hash routes and what each page leaves to clean up when another opens.
let session = null;
let leave = null;

async function start() {
  document.getElementById("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  // A page left (or kept in the back-forward cache) gives its stream back: browsers allow 6 connections per host.
  window.addEventListener("pagehide", closeEvents);
  try {
    signedIn(await get("/ui/session"));
  } catch {
    signInPage();
  }
}

function signedIn(view) {
  session = view;
  setCsrf(view.csrf);
  document.getElementById("top").hidden = false;
  document.getElementById("who").textContent = `${view.principal}${view.read_only ? " (read-only)" : ""}`;
  for (const link of document.querySelectorAll("[data-needs=write]")) link.hidden = view.read_only;
  get("/v1/fleet/hosts").then(() => (document.getElementById("nav-fleet").hidden = false)).catch(() => {});
  route();
}

function signInPage() {
  session = null;
  document.getElementById("top").hidden = true;
  const token = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true });
  const problem = h("div", { id: "signin-error", "aria-live": "assertive" });
  const form = h("form", { id: "signin", class: "signin", onsubmit: async (event) => {
    event.preventDefault();
    try {
      const view = await call("POST", "/ui/session", { token: token.value });
      token.value = "";
      if (!location.hash || location.hash === "#/signin") location.hash = "#/vms";
      signedIn(view);
    } catch (error) {
      problem.replaceChildren(errorBox(error));
      token.focus();
    }
  } },
  h("h1", {}, "Sign in to vmhost"),
  h("label", { for: "token" }, "Agent token"), token,
  h("p", { class: "muted" }, "An admin or read-only token (vmhost token create). It is exchanged for a session cookie and not kept by the page."),
  h("button", { type: "submit" }, "Sign in"), problem);
  show(form);
  token.focus();
}

async function signOut() {
  try {
    await call("DELETE", "/ui/session");
  } finally {
    if (leave) leave();
    leave = null;
    closeEvents();
    forgetListeners();
    setCsrf(null);
    location.hash = "#/signin";
    signInPage();
  }
}

function route() {
  if (!session) return signInPage();
  if (leave) leave();
  leave = null;
  const [, page, arg] = (location.hash || "#/vms").match(/^#\/([a-z]*)\/?(.*)$/) || [];
  if (page === "vm" && arg) leave = vmPage(session, decodeURIComponent(arg));
  else if (page === "create" && !session.read_only) createPage();
  else if (page === "host") leave = hostPage();
  else if (page === "fleet") leave = fleetPage(session);
  else leave = vmList(session);
  for (const link of document.querySelectorAll("nav a")) {
    link.toggleAttribute("aria-current", link.getAttribute("href") === `#/${page || "vms"}`);
  }
  document.getElementById("main").focus({ preventScroll: true });
}

start().catch((error) => show(errorBox(error)));
