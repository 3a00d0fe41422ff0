import { get, operation } from "./api.js";
import { h, show, errorBox, notice, duration, bytes } from "./dom.js";
import { subscribe } from "./events.js";

// Each action: the route, who may see it (by state), and whether it needs a yes first.
const ACTIONS = [
  { label: "Start", path: "start", when: ["stopped", "crashed", "created", "defined"] },
  { label: "Stop", path: "stop", when: ["running", "paused"] },
  { label: "Force stop", path: "stop", body: { force: true }, when: ["running", "paused", "stopping"] },
  { label: "Reboot", path: "reboot", when: ["running"] },
  { label: "Pause", path: "pause", when: ["running"] },
  { label: "Resume", path: "resume", when: ["paused"] },
  { label: "Kill", path: "kill", when: ["running", "paused"], confirm: "Power it off at once, without a shutdown?" },
];

export function vmPage(session, name) {
  const path = `/v1/vms/${encodeURIComponent(name)}`;
  const state = h("span", { id: "vm-state", class: "state" });
  const reason = h("span", { id: "vm-reason", class: "muted" });
  const actions = h("div", { class: "actions", id: "vm-actions", role: "group", "aria-label": "Actions" });
  const progress = h("div", { id: "op-progress", "aria-live": "polite" });
  const facts = h("dl", { id: "vm-facts", class: "facts" });
  const spec = h("pre", { id: "vm-spec", class: "spec" });
  const operations = h("tbody", { id: "vm-operations" });
  const snapshots = h("ul", { id: "vm-snapshots" });
  const consoleBox = h("div", { id: "console-box" });
  const chartBox = h("div", { id: "chart-box" });
  const vncBox = h("div", { id: "vnc-box" });
  const vncButton = h("button", { type: "button", id: "open-vnc", hidden: true, onclick: () => toggleVnc() }, "Open graphical console");
  let closeVnc = null;
  let current = null;
  let closeConsole = null;

  show(
    h("p", {}, h("a", { href: "#/vms" }, "← VMs")),
    h("h1", {}, name, " ", state), reason,
    session.read_only ? null : actions, progress,
    h("section", { "aria-labelledby": "h-console" }, h("h2", { id: "h-console" }, "Console"),
      h("div", { class: "actions" },
        h("button", { type: "button", id: "open-console", onclick: () => toggleConsole() }, "Open serial console"), vncButton),
      consoleBox, vncBox),
    h("section", { "aria-labelledby": "h-facts" }, h("h2", { id: "h-facts" }, "Runtime"), facts),
    h("section", { "aria-labelledby": "h-charts" }, h("h2", { id: "h-charts" }, "Last minutes"), chartBox),
    h("section", { "aria-labelledby": "h-snap" }, h("h2", { id: "h-snap" }, "Snapshots"), snapshots,
      session.read_only ? null : h("button", { type: "button", id: "snapshot", onclick: snapshot }, "Take snapshot")),
    h("section", { "aria-labelledby": "h-ops" }, h("h2", { id: "h-ops" }, "Operations"),
      h("table", {}, h("thead", {}, h("tr", {}, ["kind", "state", "progress", "started", "result or error"].map((c) => h("th", { scope: "col" }, c)))), operations)),
    h("section", { "aria-labelledby": "h-spec" }, h("h2", { id: "h-spec" }, "Spec (secrets masked)"), spec),
  );

  async function toggleConsole() {
    if (closeConsole) {
      closeConsole();
      closeConsole = null;
      consoleBox.replaceChildren();
      document.getElementById("open-console").textContent = "Open serial console";
      return;
    }
    document.getElementById("open-console").textContent = "Close console";
    const { openConsole } = await import("./console.js"); // xterm.js: loaded when first used
    closeConsole = openConsole(consoleBox, name, session.read_only);
  }

  async function toggleVnc() {
    if (closeVnc) {
      closeVnc();
      closeVnc = null;
      vncBox.replaceChildren();
      vncButton.textContent = "Open graphical console";
      return;
    }
    vncButton.textContent = "Close graphical console";
    const { openVnc } = await import("./vnc.js"); // noVNC is half the bundle: loaded when first used
    closeVnc = openVnc(vncBox, name, session.read_only);
  }

  function renderActions() {
    const now = current?.state;
    actions.replaceChildren(
      ...ACTIONS.filter((a) => a.when.includes(now)).map((a) =>
        h("button", { type: "button", dataset: { action: a.label.toLowerCase().replace(/ /g, "-") }, onclick: () => act(a) }, a.label)),
      ["running", "paused", "stopped"].includes(now)
        ? h("button", { type: "button", dataset: { action: "migrate" }, onclick: migrate }, "Migrate…")
        : null,
      h("button", { type: "button", class: "danger", dataset: { action: "delete" }, onclick: remove }, "Delete…"),
    );
  }

  async function act(action) {
    if (action.confirm && !window.confirm(action.confirm)) return;
    await run(`${action.label} ${name}`, "POST", `${path}/${action.path}`, action.body || {});
  }

  async function remove() {
    if (!window.confirm(`Delete ${name} and the disks vmhost made for it? This cannot be undone.`)) return;
    const running = ["running", "paused"].includes(current?.state);
    if (await run(`delete ${name}`, "DELETE", `${path}${running ? "?force=true" : ""}`)) location.hash = "#/vms";
  }

  async function migrate() {
    const offline = current?.state === "stopped";
    const to = window.prompt(`Migrate ${name}${offline ? " (offline)" : " (live)"} to the vmhost agent at`, "https://");
    if (!to || to === "https://") return;
    if (await run(`migrate ${name} to ${to}`, "POST", `${path}/migrate`, { to, offline })) location.hash = "#/vms";
  }

  async function snapshot() {
    const snap = window.prompt("Snapshot name", `snap-${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, "")}`);
    if (snap) await run(`snapshot ${snap}`, "POST", `${path}/snapshots`, { name: snap });
  }

  async function run(what, method, url, body) {
    progress.replaceChildren(h("p", {}, `${what}…`));
    try {
      const done = await operation(method, url, body, (op) => progress.replaceChildren(h("p", {}, `${what}: ${op.state} ${op.progress || ""}`)));
      progress.replaceChildren(h("p", { class: "ok" }, `${what}: ${done?.state ?? "done"}`));
      notice(`${what}: done`);
      load();
      return true;
    } catch (error) {
      progress.replaceChildren(errorBox(error));
      load();
      return false;
    }
  }

  async function load() {
    try {
      const [vm, info, ops, snaps] = await Promise.all([
        get(path), get(`${path}/info`).catch(() => null), get("/v1/operations?limit=200"), get(`${path}/snapshots`).catch(() => []),
      ]);
      current = vm;
      vncButton.hidden = vm.graphics?.type !== "vnc" || session.read_only;
      state.textContent = vm.state;
      state.dataset.state = vm.state;
      reason.textContent = vm.state_reason || "";
      const { state: _s, state_reason: _r, runtime: _rt, restart_status: _rs, pending: _p, created_at: _c, updated_at: _u, driver: _d, ...specOnly } = vm;
      spec.textContent = JSON.stringify(specOnly, null, 2);
      renderFacts(vm, info);
      operations.replaceChildren(...ops.filter((o) => o.vm === name).slice(0, 20).map((o) => h("tr", {},
        h("td", {}, o.kind), h("td", {}, o.state), h("td", {}, o.progress || ""),
        h("td", {}, o.started_at ? new Date(o.started_at * 1000).toLocaleString() : ""),
        h("td", {}, o.error ? `error: ${o.error.message}` : o.result ? JSON.stringify(o.result).slice(0, 120) : ""))));
      snapshots.replaceChildren(...(snaps || []).map((s) => h("li", {}, `${s.name} `, h("span", { class: "muted" }, s.created_at ? new Date(s.created_at * 1000).toLocaleString() : ""))));
      if (!session.read_only) renderActions();
    } catch (error) {
      progress.replaceChildren(errorBox(error));
    }
  }

  function renderFacts(vm, info) {
    const runtime = vm.runtime || {};
    const rows = [
      ["kind", vm.kind], ["driver", vm.driver], ["vCPUs", vm.cpu?.vcpus], ["memory", typeof vm.memory === "object" ? bytes(vm.memory.size) : vm.memory],
      ["uptime", duration(runtime.uptime_seconds)],
      ["CPU time", runtime.cpu_time_seconds !== undefined ? `${runtime.cpu_time_seconds} s` : ""],
      ["accel", runtime.accel], ["pid", runtime.pid],
      ["addresses", (info?.nics || runtime.nics || []).flatMap((n) => n.addresses || []).join(", ")],
      ["pending for the next boot", (vm.pending || []).map((c) => c.path || JSON.stringify(c)).join(", ")],
      ["console log", info?.console_log],
    ];
    facts.replaceChildren(...rows.filter(([, v]) => v !== undefined && v !== null && v !== "").flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
  }

  const unsubscribe = subscribe((event) => {
    if (event.vm !== name) return;
    if (event.state && current && event.type !== "fleet") {
      current.state = event.state;
      state.textContent = event.state;
      state.dataset.state = event.state;
      if (!session.read_only) renderActions();
    }
    clearTimeout(load.timer);
    load.timer = setTimeout(load, 300);
  }, load);
  load();
  let closeCharts = () => {};
  let left = false;
  import("./charts.js").then(({ statsCharts }) => {
    if (!left) closeCharts = statsCharts(chartBox, name);
  });
  return () => {
    left = true;
    unsubscribe();
    closeCharts();
    if (closeConsole) closeConsole();
    if (closeVnc) closeVnc();
  };
}
