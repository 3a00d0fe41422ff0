import { get } from "./api.js";
import { h, show, errorBox, bytes } from "./dom.js";
import { subscribe } from "./events.js";

// The host: capacity, versions, health, the capability matrix (driver x capability) and recent events.
export function hostPage() {
  const facts = h("dl", { class: "facts", id: "host-facts" });
  const matrix = h("table", { id: "capabilities" });
  const events = h("ol", { id: "host-events", class: "events", reversed: true });
  show(
    h("h1", {}, "Host"), facts,
    h("section", { "aria-labelledby": "h-caps" }, h("h2", { id: "h-caps" }, "Drivers and capabilities"), matrix),
    h("section", { "aria-labelledby": "h-events" }, h("h2", { id: "h-events" }, "Recent events"), events),
  );
  const seen = [];
  const unsubscribe = subscribe((event) => {
    seen.unshift(event);
    seen.length = Math.min(seen.length, 50);
    events.replaceChildren(...seen.map((e) => h("li", {},
      h("time", {}, new Date(e.time * 1000).toLocaleTimeString()), " ", h("strong", {}, e.vm || "host"), ` ${e.type}`,
      e.state ? ` → ${e.state}` : "", e.reason ? ` (${e.reason})` : "")));
  });
  Promise.all([get("/v1/host"), get("/healthz")]).then(([host, health]) => {
    const rows = [
      ["hostname", host.hostname], ["agent", `vmhost ${host.agent_version} (${health.status})`], ["hypervisor", host.hypervisor],
      ["accel", host.accel], ["CPUs", host.cpus], ["memory", `${bytes(host.memory_available)} free of ${bytes(host.memory_total)}`],
      ["VMs", host.vms],
    ];
    facts.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
    const capabilities = [...new Set(Object.values(host.capabilities).flat())].sort();
    matrix.replaceChildren(
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "capability"), host.drivers.map((d) => h("th", { scope: "col" }, d)))),
      h("tbody", {}, capabilities.map((c) => h("tr", {}, h("th", { scope: "row" }, c),
        host.drivers.map((d) => h("td", {}, (host.capabilities[d] || []).includes(c) ? "yes" : "—"))))),
    );
  }).catch((error) => facts.replaceWith(errorBox(error)));
  return unsubscribe;
}
