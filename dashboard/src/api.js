// The one way the page talks to the agent: the public /v1 API with the session cookie, and the CSRF token on
// every change. Errors carry the agent's own words (the CLI prints the same message and details).

let csrf = null;

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.details = Array.isArray(body?.details) ? body.details : [];
  }
}

export function setCsrf(value) {
  csrf = value;
}

export async function call(method, path, body, type = "application/json") {
  const headers = {};
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = type;
    payload = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

export const get = (path) => call("GET", path);

// A long operation: 202 with the operation, then its end (wait=true blocks server-side, re-asked past the limit).
export async function operation(method, path, body, onProgress) {
  let op = await call(method, path, body);
  while (op && (op.state === "pending" || op.state === "queued" || op.state === "running")) {
    if (onProgress) onProgress(op);
    op = await get(`/v1/operations/${encodeURIComponent(op.id)}?wait=true`);
  }
  if (op?.error) throw new ApiError(0, op.error);
  return op;
}

// A websocket of this agent, on the page's own origin (its session cookie goes with it; the agent checks Origin).
export function socketUrl(path) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
}
