// The REST API as the interface uses it: same origin, the session cookie, JSON in and out.
// Errors arrive as {"error": {"status", "code", "message", "details"}} and become ApiError.

export class ApiError extends Error {
  constructor(status, message, details = []) {
    super(message);
    this.status = status;
    this.details = details;
  }

  // One line for a person: the message, then each field's complaint.
  get text() {
    return this.details.length ? `${this.message}: ${this.details.join("; ")}` : this.message;
  }
}

function query(params) {
  if (!params) return "";
  const pairs = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "");
  return pairs.length ? "?" + new URLSearchParams(pairs).toString() : "";
}

async function call(method, path, body, params) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let reply;
  try {
    reply = await fetch("/api/v1" + path + query(params), init);
  } catch (err) {
    throw new ApiError(0, "the head-end cannot be reached");
  }
  if (reply.status === 204) return null;
  const type = reply.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await reply.json() : await reply.text();
  if (!reply.ok) {
    const error = (data && data.error) || {};
    if (reply.status === 401 && path !== "/login") {
      window.dispatchEvent(new CustomEvent("amr:unauthorized"));
    }
    throw new ApiError(reply.status, error.message || `HTTP ${reply.status}`, error.details || []);
  }
  return data;
}

export const api = {
  get: (path, params) => call("GET", path, undefined, params),
  post: (path, body = {}) => call("POST", path, body),
  patch: (path, body) => call("PATCH", path, body),
  del: (path) => call("DELETE", path),
  // A text answer (CSV reports).
  async text(path, params) {
    const reply = await fetch("/api/v1" + path + query(params), { credentials: "same-origin" });
    if (!reply.ok) throw new ApiError(reply.status, `HTTP ${reply.status}`);
    return reply.text();
  },
};
