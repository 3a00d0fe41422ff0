import uPlot from "uplot";
import { get } from "./api.js";
import { h, bytes } from "./dom.js";

// Small charts of the VM's last minutes (GET /v1/vms/{vm}/stats: the agent samples every few seconds): CPU in %
// of one host CPU, host memory used, disk and network bytes per second. Counters become rates between samples.
const CHARTS = [
  { title: "CPU %", series: [["cpu", (a, b, dt) => (100 * (b.cpu_seconds - a.cpu_seconds)) / dt]], unit: (v) => `${v.toFixed(0)}%` },
  { title: "Memory (host RSS)", series: [["rss", (_a, b) => b.rss_bytes]], unit: bytes },
  { title: "Disk bytes/s", series: [["read", rate("disk_read_bytes")], ["write", rate("disk_write_bytes")]], unit: (v) => `${bytes(v)}/s` },
  { title: "Network bytes/s", series: [["rx", rate("net_rx_bytes")], ["tx", rate("net_tx_bytes")]], unit: (v) => `${bytes(v)}/s` },
];
const COLORS = ["#0550ae", "#bc4c00"];
const WINDOW = 600; // seconds shown: what the agent keeps

function rate(key) {
  return (a, b, dt) => (a[key] === null || b[key] === null ? null : (b[key] - a[key]) / dt);
}

export function statsCharts(box, name) {
  const plots = [];
  const empty = h("p", { class: "muted", id: "charts-empty" }, "No samples yet: the agent samples running VMs every few seconds.");
  const grid = h("div", { class: "charts", id: "charts" });
  box.replaceChildren(empty, grid);
  let timer = null;

  async function refresh() {
    let answer;
    try {
      answer = await get(`/v1/vms/${encodeURIComponent(name)}/stats`);
    } catch {
      return;
    }
    const samples = answer.samples || [];
    empty.hidden = samples.length > 1;
    if (samples.length < 2) return;
    const times = samples.slice(1).map((s) => s.time);
    CHARTS.forEach((chart, index) => {
      const values = chart.series.map(([, f]) => samples.slice(1).map((b, i) => {
        const a = samples[i];
        const dt = b.time - a.time;
        const v = dt > 0 && b.cpu_seconds !== undefined ? f(a, b, dt) : null;
        return v === null || Number.isNaN(v) || v < 0 ? null : v;
      }));
      const data = [times, ...values];
      if (plots[index]) {
        plots[index].setData(data);
        return;
      }
      const holder = h("figure", { class: "chart", dataset: { chart: chart.title } }, h("figcaption", {}, chart.title));
      grid.append(holder);
      plots[index] = new uPlot({
        width: 280, height: 140, legend: { show: true },
        scales: { x: { time: true, range: () => [Date.now() / 1000 - WINDOW, Date.now() / 1000] } },
        axes: [{}, { values: (_u, ticks) => ticks.map(chart.unit), size: 84 }],
        series: [{}, ...chart.series.map(([label], i) => ({ label, stroke: COLORS[i], width: 1.5, value: (_u, v) => (v === null ? "—" : chart.unit(v)) }))],
      }, data, holder);
    });
  }
  refresh();
  timer = setInterval(refresh, 5000);
  return () => {
    clearInterval(timer);
    plots.forEach((p) => p.destroy());
  };
}
