import RFB from "@novnc/novnc/lib/rfb.js";
import { socketUrl } from "./api.js";
import { h } from "./dom.js";

// The graphical console (noVNC) over the agent's VNC websocket. The agent authenticates to the VM's display with
// its VNC password; the page never has it. Read-only sessions get a view-only display.
export function openVnc(box, name, readOnly) {
  const screen = h("div", { class: "vnc", id: "vnc-screen", role: "application", "aria-label": `Display of ${name}` });
  const status = h("p", { class: "muted", id: "vnc-status" }, "connecting…");
  box.replaceChildren(screen, status);
  const rfb = new RFB(screen, socketUrl(`/v1/vms/${encodeURIComponent(name)}/vnc`));
  rfb.scaleViewport = true;
  rfb.viewOnly = readOnly;
  rfb.addEventListener("connect", () => {
    status.textContent = "connected";
    status.dataset.state = "connected";
  });
  rfb.addEventListener("disconnect", (event) => {
    status.textContent = event.detail?.clean ? "display closed" : "display connection lost";
    status.dataset.state = "closed";
  });
  return () => rfb.disconnect();
}
