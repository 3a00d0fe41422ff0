import { get, call } from "./api.js";
import { h, show, errorBox, bytes } from "./dom.js";

// The fleet (agents with [fleet]): hosts with liveness and capacity, VMs by host, drain and uncordon.
export function fleetPage(session) {
  const hosts = h("tbody", { id: "fleet-hosts" });
  const vms = h("tbody", { id: "fleet-vms" });
  const result = h("div", { "aria-live": "polite" });
  show(
    h("h1", {}, "Fleet"), result,
    h("h2", {}, "Hosts"),
    h("table", {}, h("thead", {}, h("tr", {}, ["host", "alive", "schedulable", "VMs", "vCPUs", "memory", "labels", ""].map((c) => h("th", { scope: "col" }, c)))), hosts),
    h("h2", {}, "VMs"),
    h("table", {}, h("thead", {}, h("tr", {}, ["VM", "host", "desired", "state", "generation", "error"].map((c) => h("th", { scope: "col" }, c)))), vms),
  );

  async function change(path, what) {
    result.replaceChildren(h("p", {}, `${what}…`));
    try {
      await call("POST", path, {});
      result.replaceChildren(h("p", { class: "ok" }, `${what}: done`));
    } catch (error) {
      result.replaceChildren(errorBox(error));
    }
    load();
  }

  async function load() {
    try {
      const [hostRows, vmRows] = await Promise.all([get("/v1/fleet/hosts"), get("/v1/fleet/vms")]);
      hosts.replaceChildren(...hostRows.map((r) => h("tr", { dataset: { host: r.name } },
        h("td", {}, r.name), h("td", {}, r.alive ? "yes" : "DOWN"), h("td", {}, r.schedulable ? "yes" : "no"),
        h("td", {}, r.load?.vms ?? ""), h("td", {}, `${r.load?.vcpus ?? 0} / ${r.vcpus ?? ""}`),
        h("td", {}, `${bytes(r.load?.memory ?? 0)} / ${bytes(r.memory ?? 0)}`),
        h("td", {}, Object.entries(r.labels || {}).map(([k, v]) => `${k}=${v}`).join(" ")),
        h("td", {}, session.read_only ? "" : !r.cordoned
          ? h("button", { type: "button", dataset: { action: "drain" }, onclick: () => window.confirm(`Drain ${r.name}: live-migrate its VMs away?`) && change(`/v1/fleet/hosts/${encodeURIComponent(r.name)}/drain`, `drain ${r.name}`) }, "Drain")
          : h("button", { type: "button", dataset: { action: "uncordon" }, onclick: () => change(`/v1/fleet/hosts/${encodeURIComponent(r.name)}/uncordon`, `uncordon ${r.name}`) }, "Uncordon")))));
      vms.replaceChildren(...vmRows.map((r) => h("tr", {},
        h("td", {}, r.name), h("td", {}, r.host), h("td", {}, r.desired_state), h("td", {}, r.state),
        h("td", {}, `${r.observed_generation}/${r.generation}`), h("td", {}, r.error || r.reason || ""))));
    } catch (error) {
      result.replaceChildren(errorBox(error));
    }
  }
  load();
  const timer = setInterval(load, 5000);
  return () => clearInterval(timer);
}
