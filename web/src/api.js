// The REST API (`/api/v1`): JSON in, JSON out, and errors turned into readable messages
// from the API's error bodies.

/** An API call that failed: `message` is meant for the user; `status` is the HTTP status. */
export class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }
}

/**
 * A readable message from an error body: `{"errors": {"detail": "..."}}` gives its detail,
 * `{"errors": {"email": ["has already been taken"]}}` gives "email has already been taken".
 */
export function errorMessage(status, body, retryAfter) {
  const errors = body && typeof body === "object" ? body.errors : null;
  let text;
  if (errors && typeof errors === "object") {
    if (typeof errors.detail === "string") {
      text = errors.detail;
    } else {
      text = Object.entries(errors)
        .map(([field, problems]) => `${field.replace(/_/g, " ")} ${[].concat(problems).join(", ")}`)
        .join("; ");
    }
  }
  text = text || `the server answered ${status}`;
  if (status === 429 && retryAfter) text += ` (try again in ${retryAfter} s)`;
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** A client of the REST API; `token()` gives the bearer token (or nothing). */
export class Api {
  constructor(token = () => null) {
    this.token = token;
  }

  /** `METHOD /api/v1PATH` with an optional JSON body; resolves to the parsed body. */
  async call(method, path, body) {
    const headers = { accept: "application/json" };
    const token = this.token();
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    let response;
    try {
      response = await fetch(`/api/v1${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiError(`Cannot reach the server (${error.message})`, 0, null);
    }
    const text = await response.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    if (!response.ok) {
      const message = errorMessage(response.status, parsed, response.headers.get("retry-after"));
      throw new ApiError(message, response.status, parsed);
    }
    return parsed;
  }

  register(user) {
    return this.call("POST", "/users", { user });
  }

  async login(email, password) {
    return (await this.call("POST", "/sessions", { email, password })).data;
  }

  logout() {
    return this.call("DELETE", "/sessions");
  }

  async me() {
    return (await this.call("GET", "/me")).data;
  }

  async socketToken() {
    return (await this.call("POST", "/socket_tokens")).data.token;
  }

  /** One page of users: `{ data, meta: { next } }`. */
  users(after) {
    return this.call("GET", `/users?limit=100${after ? `&after=${encodeURIComponent(after)}` : ""}`);
  }

  async user(id) {
    return (await this.call("GET", `/users/${id}`)).data;
  }

  async openConversation(recipientId) {
    return (await this.call("POST", "/conversations", { recipient_id: recipientId })).data;
  }

  /** A page of history, oldest first: `{ data, meta: { has_more } }`. */
  messages(conversationId, { before, after, limit } = {}) {
    const query = new URLSearchParams();
    if (before) query.set("before", before);
    if (after) query.set("after", after);
    if (limit) query.set("limit", limit);
    const suffix = query.size ? `?${query}` : "";
    return this.call("GET", `/conversations/${conversationId}/messages${suffix}`);
  }
}
