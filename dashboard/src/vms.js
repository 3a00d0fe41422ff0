import { get } from "./api.js";
import { h, show, errorBox, duration } from "./dom.js";
import { subscribe } from "./events.js";

const COLUMNS = [
  ["name", "Name"], ["kind", "Kind"], ["driver", "Driver"], ["state", "State"],
  ["vcpus", "vCPUs"], ["memory", "Memory"], ["addresses", "Addresses"], ["uptime_seconds", "Uptime"], ["labels", "Labels"],
];

// The VM list: fetched once (and again when a VM appears or goes), each state change applied from the stream.
export function vmList(session) {
  let rows = [];
  let sort = { key: "name", descending: false };
  const filter = h("input", { id: "filter", type: "search", placeholder: "name, state, label…", oninput: render });
  const body = h("tbody");
  const status = h("p", { class: "muted", id: "vm-count" });
  const table = h(
    "table",
    { id: "vm-table" },
    h("caption", { class: "sr-only" }, "Virtual machines and containers"),
    h("thead", {}, h("tr", {}, COLUMNS.map(([key, label]) =>
      h("th", { scope: "col", "aria-sort": "none", dataset: { key } },
        h("button", { type: "button", class: "sort", onclick: () => sortBy(key) }, label))))),
    body,
  );
  show(
    h("h1", {}, "VMs"),
    h("div", { class: "toolbar" },
      h("label", { for: "filter" }, "Filter "), filter,
      session.read_only ? null : h("a", { href: "#/create", class: "button" }, "Create")),
    table, status,
  );

  function sortBy(key) {
    sort = { key, descending: sort.key === key ? !sort.descending : false };
    render();
  }

  function text(row, key) {
    if (key === "labels") return Object.entries(row.labels || {}).map(([k, v]) => `${k}=${v}`).join(" ");
    if (key === "addresses") return (row.addresses || []).join(" ");
    if (key === "uptime_seconds") return row.state === "running" || row.state === "paused" ? duration(row.uptime_seconds) : "";
    return String(row[key] ?? "");
  }

  function render() {
    const wanted = filter.value.trim().toLowerCase();
    const shown = rows
      .filter((row) => !wanted || COLUMNS.some(([key]) => text(row, key).toLowerCase().includes(wanted)))
      .sort((a, b) => {
        const x = a[sort.key], y = b[sort.key];
        const order = typeof x === "number" && typeof y === "number" ? x - y : text(a, sort.key).localeCompare(text(b, sort.key));
        return sort.descending ? -order : order;
      });
    body.replaceChildren(...shown.map((row) => h("tr", { dataset: { vm: row.name } },
      COLUMNS.map(([key]) => key === "name"
        ? h("td", {}, h("a", { href: `#/vm/${encodeURIComponent(row.name)}` }, row.name))
        : h("td", { class: key, dataset: key === "state" ? { state: row.state } : {} }, text(row, key))))));
    for (const th of table.querySelectorAll("th")) {
      th.setAttribute("aria-sort", th.dataset.key === sort.key ? (sort.descending ? "descending" : "ascending") : "none");
    }
    status.textContent = `${shown.length} of ${rows.length} shown`;
  }

  let pending = null;
  async function load() {
    try {
      rows = await get("/v1/vms");
      render();
      if (!performance.getEntriesByName("vmhost:vm-list").length) performance.mark("vmhost:vm-list"); // bench/dashboard.py
      addRuntime();
    } catch (error) {
      show(h("h1", {}, "VMs"), errorBox(error));
    }
  }
  // Uptime and addresses cost the agent a hypervisor call per running VM: asked for after the list is shown.
  async function addRuntime() {
    if (!rows.some((r) => r.state === "running" || r.state === "paused")) return;
    try {
      const facts = new Map((await get("/v1/vms?runtime=true")).map((r) => [r.name, r]));
      for (const row of rows) {
        const known = facts.get(row.name);
        if (known) Object.assign(row, { uptime_seconds: known.uptime_seconds, addresses: known.addresses || [] });
      }
      render();
    } catch {
      // the list stands without them
    }
  }

  function reload() {
    clearTimeout(pending);
    pending = setTimeout(load, 150);
  }

  const unsubscribe = subscribe((event) => {
    const row = rows.find((r) => r.name === event.vm);
    if (!event.vm) return;
    if (!row || event.type === "deleted" || event.type === "migrated") return reload();
    if (event.state && event.type !== "fleet") {
      row.state = event.state;
      render();
      if (event.state === "running") {
        clearTimeout(addRuntime.timer);
        addRuntime.timer = setTimeout(addRuntime, 1000);
      }
    }
  }, load);
  load();
  return unsubscribe;
}
