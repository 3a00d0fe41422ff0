import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { socketUrl } from "./api.js";
import { h } from "./dom.js";

// The serial console in the page: what the console said so far (its log), then the agent's console websocket
// (binary frames both ways), the session cookie as its credential (the agent checks the page's Origin). A few
// bytes printed between reading the log and the socket's start can show twice.
export function openConsole(box, name, readOnly) {
  const screen = h("div", { class: "terminal", id: "terminal", role: "application", "aria-label": `Serial console of ${name}` });
  const status = h("p", { class: "muted", id: "console-status" }, "connecting…");
  box.replaceChildren(screen, status);
  const terminal = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 14, scrollback: 5000 });
  const fit = new FitAddon();
  terminal.loadAddon(fit);
  terminal.open(screen);
  fit.fit();
  let socket = null;
  let closed = false;
  fetch(`/v1/vms/${encodeURIComponent(name)}/console/log`, { credentials: "same-origin" })
    .then((response) => (response.ok ? response.text() : ""))
    .catch(() => "")
    .then((text) => {
      if (closed) return;
      terminal.write(text.slice(-65536).replace(/\r?\n/g, "\r\n"));
      socket = connect(terminal, status, name, readOnly);
    });
  const encoder = new TextEncoder();
  terminal.onData((text) => {
    if (socket?.readyState === WebSocket.OPEN) socket.send(encoder.encode(text));
  });
  const resize = () => fit.fit();
  window.addEventListener("resize", resize);
  return () => {
    closed = true;
    window.removeEventListener("resize", resize);
    if (socket) socket.close();
    terminal.dispose();
  };
}

function connect(terminal, status, name, readOnly) {
  const socket = new WebSocket(socketUrl(`/v1/vms/${encodeURIComponent(name)}/console`));
  socket.binaryType = "arraybuffer";
  socket.onopen = () => {
    status.textContent = readOnly ? "connected (read-only sessions cannot type)" : "connected: type into the console";
    terminal.focus();
  };
  socket.onmessage = (message) => {
    const data = message.data instanceof ArrayBuffer ? new Uint8Array(message.data) : message.data;
    terminal.write(data);
  };
  socket.onclose = (event) => {
    status.textContent = `console closed${event.reason ? `: ${event.reason}` : ""}`;
  };
  return socket;
}
