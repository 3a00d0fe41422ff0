// Elements built from data, never from HTML strings: nothing a VM name or a guest prints can become markup.

export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) element.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(element.dataset, value);
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function show(...children) {
  const main = document.getElementById("main");
  main.replaceChildren(...children);
  return main;
}

export function notice(text) {
  document.getElementById("notice").textContent = text;
}

// An error as the CLI prints it: the message, then each problem at its path.
export function errorBox(error) {
  return h(
    "div",
    { class: "error", role: "alert" },
    h("p", {}, `error: ${error.message}`),
    error.details?.length
      ? h("ul", { class: "problems" }, error.details.map((d) => h("li", {}, h("code", {}, d.path || "(spec)"), `: ${d.message}`)))
      : null,
  );
}

export function bytes(value) {
  if (typeof value !== "number") return String(value ?? "");
  const units = [["TiB", 2 ** 40], ["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]];
  for (const [unit, size] of units) if (value >= size) return `${(value / size).toFixed(1).replace(/\.0$/, "")} ${unit}`;
  return `${value} B`;
}

export function duration(seconds) {
  if (typeof seconds !== "number") return "";
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400), hr = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${hr}h` : hr ? `${hr}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}
